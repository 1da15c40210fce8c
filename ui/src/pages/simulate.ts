import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { ErrorLine, type Session } from '../shared.js';

const ACTIONS = ['datakey', 'encrypt', 'decrypt', 'rewrap', 'rewrap-revoked', 'keys:create', 'keys:read', 'keys:update', 'keys:rotate', 'keys:disable', 'keys:enable', 'keys:delete', 'policies:read', 'policies:write', 'tokens:read', 'tokens:write', 'aws-credentials:read', 'aws-credentials:write', 'audit:read'];

interface Simulation {
  decision: 'allow' | 'deny';
  reason: string;
  matched: { policy: string; statement: number; effect: string; sid?: string }[];
}

/** Asks the server's POST /v1/policies/simulate: the same evaluator as real requests, over the stored policies. */
export function SimulatePage({ session }: { session: Session }): VNode {
  const [form, setForm] = useState({ principal: '', action: 'decrypt', key: '', context: '' });
  const [result, setResult] = useState<Simulation | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const set = (name: keyof typeof form) => (e: Event) => setForm({ ...form, [name]: (e.target as HTMLInputElement).value });
  const run = async (event: Event): Promise<void> => {
    event.preventDefault();
    setError(undefined);
    setResult(undefined);
    try {
      const context = form.context.trim() === '' ? undefined : (JSON.parse(form.context) as unknown);
      setResult(
        await session.api.post<Simulation>('/v1/policies/simulate', {
          principal: { id: form.principal },
          action: form.action,
          ...(form.key === '' ? {} : { key: form.key }),
          ...(context === undefined ? {} : { context }),
        }),
      );
    } catch (caught) {
      setError(caught);
    }
  };
  return html`<section>
    <h1>Policy simulation</h1>
    <form class="stacked" onSubmit=${run}>
      <label>Principal <input value=${form.principal} onInput=${set('principal')} placeholder="k8s:shop:payments" required /></label>
      <label>Action <select value=${form.action} onChange=${set('action')}>${ACTIONS.map((a) => html`<option value=${a}>${a}</option>`)}</select></label>
      <label>Key <input value=${form.key} onInput=${set('key')} placeholder="payments" /></label>
      <label>Encryption context (JSON) <input value=${form.context} onInput=${set('context')} placeholder='{"tenant":"t-1"}' /></label>
      <button type="submit" class="primary">Simulate</button>
    </form>
    <${ErrorLine} error=${error} />
    ${result !== undefined &&
    html`<div class=${`verdict ${result.decision}`} data-test="verdict">
      <strong>${result.decision}</strong> — ${result.reason}
      ${result.matched.length > 0 && html`<ul>${result.matched.map((m) => html`<li>${m.policy} ${m.sid ?? `#${m.statement}`}: ${m.effect}</li>`)}</ul>`}
    </div>`}
  </section>`;
}
