import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { readAll } from '../api.js';
import { formatDuration } from '../analysis.js';
import { ErrorLine, time, useAllowed, type Session } from '../shared.js';
import type { KeySummary } from '../types.js';

export function KeysPage({ session }: { session: Session }): VNode {
  const [keys, setKeys] = useState<KeySummary[] | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [name, setName] = useState('');
  const allowed = useAllowed(session, ['keys:create']);
  const load = (): void => {
    readAll<KeySummary>(session.api, '/v1/keys', 'keys').then(setKeys, setError);
  };
  useEffect(load, []);
  const create = async (event: Event): Promise<void> => {
    event.preventDefault();
    setError(undefined);
    try {
      await session.api.post('/v1/keys', { name });
      setName('');
      load();
    } catch (caught) {
      setError(caught);
    }
  };
  const now = Date.now();
  return html`<section>
    <h1>Keys</h1>
    ${allowed['keys:create'] &&
    html`<form class="inline" onSubmit=${create}>
      <label>New key <input name="key-name" value=${name} onInput=${(e: Event) => setName((e.target as HTMLInputElement).value)} required pattern="[A-Za-z0-9][A-Za-z0-9._\\-]{0,127}" /></label>
      <button type="submit" class="primary">Create key</button>
    </form>`}
    <${ErrorLine} error=${error} />
    ${keys === undefined
      ? html`<p>Loading…</p>`
      : html`<table class="keys">
          <thead><tr><th>Name</th><th>State</th><th>Primary</th><th>Age</th><th>Next rotation</th><th>Versions</th></tr></thead>
          <tbody>
            ${keys.map(
              (key) => html`<tr key=${key.id} data-key=${key.name}>
                <td><a href=${`#/keys/${encodeURIComponent(key.name)}`}>${key.name}</a></td>
                <td><span class=${`state state-${key.state}`}>${key.state}</span></td>
                <td>v${key.primaryVersion}</td>
                <td title=${time(key.createdAt)}>${formatDuration(now - Date.parse(key.createdAt))}</td>
                <td>${key.nextRotationAt === null ? '—' : `${time(key.nextRotationAt)} (in ${formatDuration(Date.parse(key.nextRotationAt) - now)})`}</td>
                <td>${key.versionCount} (${key.enabledVersionCount} enabled)</td>
              </tr>`,
            )}
            ${keys.length === 0 && html`<tr><td colspan="6">No keys.</td></tr>`}
          </tbody>
        </table>`}
  </section>`;
}
