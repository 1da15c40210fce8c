import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { readAll } from '../api.js';
import { ConfirmDialog, ErrorLine, time, useAllowed, type ConfirmRequest, type Session } from '../shared.js';
import type { Token } from '../types.js';

export function TokensPage({ session }: { session: Session }): VNode {
  const [tokens, setTokens] = useState<Token[] | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [form, setForm] = useState({ name: '', admin: false, ttlHours: '' });
  const [secret, setSecret] = useState<string | undefined>(undefined);
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const allowed = useAllowed(session, ['tokens:write']);
  const load = (): void => {
    readAll<Token>(session.api, '/v1/tokens', 'tokens').then(setTokens, setError);
  };
  useEffect(load, []);
  const create = async (event: Event): Promise<void> => {
    event.preventDefault();
    setError(undefined);
    try {
      const ttl = form.ttlHours === '' ? undefined : Math.round(Number(form.ttlHours) * 3600);
      const created = await session.api.post<{ token: string }>('/v1/tokens', { name: form.name, admin: form.admin, ...(ttl === undefined ? {} : { ttlSeconds: ttl }) });
      setSecret(created.token);
      setForm({ name: '', admin: false, ttlHours: '' });
      load();
    } catch (caught) {
      setError(caught);
    }
  };
  return html`<section>
    <h1>Tokens</h1>
    ${allowed['tokens:write'] &&
    html`<form class="inline" onSubmit=${create}>
      <label>Name <input value=${form.name} onInput=${(e: Event) => setForm({ ...form, name: (e.target as HTMLInputElement).value })} required /></label>
      <label><input type="checkbox" checked=${form.admin} onChange=${(e: Event) => setForm({ ...form, admin: (e.target as HTMLInputElement).checked })} /> admin</label>
      <label>TTL (hours) <input type="number" min="1" value=${form.ttlHours} onInput=${(e: Event) => setForm({ ...form, ttlHours: (e.target as HTMLInputElement).value })} /></label>
      <button type="submit" class="primary">Create token</button>
    </form>`}
    ${secret !== undefined &&
    html`<div class="secret"><p>The new token, shown this once:</p><code>${secret}</code> <button type="button" onClick=${() => setSecret(undefined)}>Done</button></div>`}
    <${ErrorLine} error=${error} />
    ${tokens === undefined
      ? html`<p>Loading…</p>`
      : html`<table class="tokens">
          <thead><tr><th>Name</th><th>Admin</th><th>Created</th><th>Expires</th><th></th></tr></thead>
          <tbody>
            ${tokens.map(
              (token) => html`<tr key=${token.id}>
                <td>${token.name}</td><td>${token.admin ? 'yes' : ''}</td><td>${time(token.createdAt)}</td><td>${time(token.expiresAt)}</td>
                <td>${allowed['tokens:write'] &&
                html`<button type="button" class="danger small" onClick=${() =>
                  setConfirm({
                    title: `Revoke token “${token.name}”?`,
                    body: `Every request with the token “${token.name}” will be refused from now on.`,
                    confirmLabel: 'Revoke',
                    danger: true,
                    run: () => session.api.del(`/v1/tokens/${encodeURIComponent(token.id)}`),
                  })}>Revoke</button>`}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
    <${ConfirmDialog} request=${confirm} onClose=${(done: boolean) => { setConfirm(null); if (done) load(); }} />
  </section>`;
}
