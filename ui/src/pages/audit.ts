import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { isDecryptionFailure, isDenial } from '../analysis.js';
import { ErrorLine, type Session } from '../shared.js';
import type { AuditRecord } from '../types.js';

const POLL_MS = 2000;
const KEEP = 500;

/** The live stream: GET /v1/audit (newest first) every 2 s, merged by (replica, sequence). */
export function AuditPage({ session }: { session: Session }): VNode {
  const [records, setRecords] = useState<AuditRecord[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [paused, setPaused] = useState(false);
  const [filter, setFilter] = useState({ principal: '', key: '', outcome: '' });
  const filterRef = useRef(filter);
  filterRef.current = filter;

  useEffect(() => {
    if (paused) return;
    let live = true;
    const poll = async (): Promise<void> => {
      const query = new URLSearchParams({ limit: '100' });
      for (const [name, value] of Object.entries(filterRef.current)) if (value !== '') query.set(name, value);
      try {
        const page = await session.api.get<{ records: AuditRecord[] }>(`/v1/audit?${query}`);
        if (!live) return;
        setError(undefined);
        setRecords((previous) => {
          const seen = new Set(previous.map((r) => `${r.replicaId}/${r.sequence}`));
          const fresh = page.records.filter((r) => !seen.has(`${r.replicaId}/${r.sequence}`));
          return [...fresh, ...previous].sort((a, b) => b.time.localeCompare(a.time) || b.sequence - a.sequence).slice(0, KEEP);
        });
      } catch (caught) {
        if (live) setError(caught);
      }
    };
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [paused, filter.principal, filter.key, filter.outcome]);

  const field = (name: keyof typeof filter, label: string) =>
    html`<label>${label} <input value=${filter[name]} onChange=${(e: Event) => {
      setRecords([]);
      setFilter({ ...filter, [name]: (e.target as HTMLInputElement).value.trim() });
    }} /></label>`;

  return html`<section>
    <h1>Audit stream <span class=${paused ? 'tag' : 'tag live'}>${paused ? 'paused' : 'live'}</span></h1>
    <form class="inline" onSubmit=${(e: Event) => e.preventDefault()}>
      ${field('principal', 'Principal')} ${field('key', 'Key')} ${field('outcome', 'Outcome')}
      <button type="button" onClick=${() => setPaused(!paused)}>${paused ? 'Resume' : 'Pause'}</button>
    </form>
    <p class="legend"><span class="deny">denial</span> <span class="decrypt-failure">decryption failure</span></p>
    <${ErrorLine} error=${error} />
    <table class="audit">
      <thead><tr><th>Time</th><th>Principal</th><th>Action</th><th>Key</th><th>Version</th><th>Decision</th><th>Outcome</th><th>Route</th></tr></thead>
      <tbody>
        ${records.map((r) => {
          const kind = isDecryptionFailure(r) ? 'decrypt-failure' : isDenial(r) ? 'deny' : '';
          return html`<tr key=${`${r.replicaId}/${r.sequence}`} class=${kind} data-action=${r.action ?? ''} data-outcome=${r.outcome}>
            <td>${new Date(r.time).toLocaleTimeString()}</td><td>${r.principalId ?? '—'}</td><td>${r.action ?? '—'}</td>
            <td>${r.keyName ?? ''}</td><td>${r.keyVersion ?? ''}</td><td>${r.decision ?? ''}${r.decisionReason === null ? '' : ` (${r.decisionReason})`}</td>
            <td>${r.outcome}</td><td>${r.method} ${r.route ?? ''}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}
