import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { ApiError, readAll } from '../api.js';
import { formatDuration, policyCoverage } from '../analysis.js';
import { ConfirmDialog, ErrorLine, time, useAllowed, type ConfirmRequest, type Session } from '../shared.js';
import type { Key, Policy, Usage } from '../types.js';

const ACTIONS = ['keys:rotate', 'keys:disable', 'keys:enable', 'keys:delete'] as const;

type Loaded<T> = { state: 'loading' } | { state: 'ok'; value: T } | { state: 'unavailable'; why: string };

function loaded<T>(promise: Promise<T>, set: (value: Loaded<T>) => void): void {
  promise.then(
    (value) => set({ state: 'ok', value }),
    (error: unknown) =>
      set({ state: 'unavailable', why: error instanceof ApiError ? (error.status === 404 ? 'not available on this server' : error.status === 403 ? 'not available to you' : error.code) : String(error) }),
  );
}

export function KeyPage({ session, name }: { session: Session; name: string }): VNode {
  const path = `/v1/keys/${encodeURIComponent(name)}`;
  const [key, setKey] = useState<Key | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [policies, setPolicies] = useState<Loaded<Policy[]>>({ state: 'loading' });
  const [usage, setUsage] = useState<Loaded<Usage>>({ state: 'loading' });
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const [days, setDays] = useState(30);
  const allowed = useAllowed(session, ACTIONS, name);

  const load = (): void => {
    session.api.get<Key>(path).then(setKey, setError);
    loaded(readAll<Policy>(session.api, '/v1/policies', 'policies'), setPolicies);
    loaded(session.api.get<Usage>(`${path}/usage`), setUsage);
  };
  useEffect(load, [name]);

  if (key === undefined) return html`<section><h1>Key ${name}</h1>${error === undefined ? html`<p>Loading…</p>` : html`<${ErrorLine} error=${error} />`}</section>`;

  const ask = (title: string, body: string, confirmLabel: string, run: () => Promise<unknown>, danger = false): void =>
    setConfirm({ title, body, confirmLabel, run, danger });
  const post = (suffix: string, body: unknown = {}) => () => session.api.post(`${path}${suffix}`, body);
  const live = key.state !== 'destroyed';
  const coverage = policies.state === 'ok' ? policyCoverage(policies.value, key.name) : [];

  return html`<section class="key-page">
    <h1>Key <span class="key-name">${key.name}</span> <span class=${`state state-${key.state}`}>${key.state}</span></h1>
    <dl class="facts">
      <dt>Id</dt><dd><code>${key.id}</code></dd>
      <dt>Primary version</dt><dd data-test="primary">v${key.primaryVersion}</dd>
      <dt>Minimum decryption version</dt><dd>v${key.minDecryptionVersion}</dd>
      <dt>Created</dt><dd>${time(key.createdAt)} (${formatDuration(Date.now() - Date.parse(key.createdAt))} ago)</dd>
      <dt>Rotation</dt><dd>${key.rotationPeriodSeconds === null ? 'manual' : `every ${formatDuration(key.rotationPeriodSeconds * 1000)}, next ${time(key.nextRotationAt)}`}</dd>
      ${key.deletionDate !== null && html`<dt>Deletion</dt><dd class="warn">${time(key.deletionDate)}</dd>`}
    </dl>
    <div class="actions">
      ${allowed['keys:rotate'] && key.state === 'enabled' &&
      html`<button type="button" class="primary" onClick=${() => ask(`Rotate key “${key.name}”?`, `A new version v${key.versions.length + 1} becomes primary for “${key.name}”; older versions still decrypt.`, 'Rotate', post('/rotate'))}>Rotate</button>`}
      ${allowed['keys:disable'] && key.state === 'enabled' &&
      html`<button type="button" class="danger" onClick=${() => ask(`Disable key “${key.name}”?`, `Every cryptographic operation with “${key.name}” will be refused until it is enabled again.`, 'Disable', post('/disable'), true)}>Disable</button>`}
      ${allowed['keys:enable'] && key.state === 'disabled' &&
      html`<button type="button" onClick=${() => ask(`Enable key “${key.name}”?`, `“${key.name}” will encrypt and decrypt again.`, 'Enable', post('/enable'))}>Enable</button>`}
      ${allowed['keys:delete'] && (key.state === 'enabled' || key.state === 'disabled') &&
      html`<span class="inline"><label>Window <input type="number" min="7" max="30" value=${days} onInput=${(e: Event) => setDays(Number((e.target as HTMLInputElement).value))} /> days</label>
        <button type="button" class="danger" onClick=${() => ask(`Schedule deletion of key “${key.name}”?`, `“${key.name}” and every ciphertext made with it become unreadable for good after ${days} days, unless the deletion is cancelled.`, 'Schedule deletion', post('/schedule-deletion', { pendingWindowDays: days }), true)}>Schedule deletion</button></span>`}
      ${allowed['keys:delete'] && key.state === 'pending_deletion' &&
      html`<button type="button" onClick=${() => ask(`Cancel the deletion of key “${key.name}”?`, `“${key.name}” stays, disabled.`, 'Cancel deletion', post('/cancel-deletion'))}>Cancel deletion</button>`}
      ${!ACTIONS.some((action) => allowed[action]) && html`<span class="muted">Read-only: your grants allow no change to this key.</span>`}
    </div>

    <h2>Versions</h2>
    <table class="versions">
      <thead><tr><th>Version</th><th>State</th><th>Created</th><th></th></tr></thead>
      <tbody>
        ${[...key.versions].reverse().map(
          (version) => html`<tr key=${version.version} data-version=${version.version}>
            <td>v${version.version}${version.version === key.primaryVersion ? html` <span class="tag">primary</span>` : ''}${version.version < key.minDecryptionVersion ? html` <span class="tag">below minimum</span>` : ''}</td>
            <td><span class=${`state state-${version.state}`}>${version.state}</span></td>
            <td>${time(version.createdAt)}</td>
            <td>
              ${live && allowed['keys:disable'] && version.state === 'enabled' && version.version !== key.primaryVersion &&
              html`<button type="button" class="danger small" onClick=${() => ask(`Disable version v${version.version} of key “${key.name}”?`, `Ciphertexts made with v${version.version} of “${key.name}” will not decrypt until the version is enabled again.`, 'Disable version', post(`/versions/${version.version}/disable`), true)}>Disable</button>`}
              ${live && allowed['keys:enable'] && version.state === 'disabled' &&
              html`<button type="button" class="small" onClick=${() => ask(`Enable version v${version.version} of key “${key.name}”?`, `v${version.version} of “${key.name}” will decrypt again.`, 'Enable version', post(`/versions/${version.version}/enable`))}>Enable</button>`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>

    <h2>Policy coverage</h2>
    ${policies.state === 'loading'
      ? html`<p>Loading…</p>`
      : policies.state === 'unavailable'
        ? html`<p class="muted" data-test="coverage-unavailable">Policies ${policies.why}.</p>`
        : coverage.length === 0
          ? html`<p class="muted">No policy statement names this key: only admins may use it.</p>`
          : html`<table class="coverage">
              <thead><tr><th>Policy</th><th>Statement</th><th>Effect</th><th>Principals</th><th>Actions</th><th>Via</th></tr></thead>
              <tbody>
                ${coverage.map(
                  (entry) => html`<tr class=${entry.effect}>
                    <td>${entry.policy}</td><td>${entry.sid ?? `#${entry.statement}`}</td><td>${entry.effect}</td>
                    <td>${entry.principals.join(', ')}</td><td>${entry.actions.join(', ')}</td>
                    <td><code>${entry.via}</code>${entry.conditional ? ' (depends on the principal)' : ''}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`}

    <h2>Fleet inventory</h2>
    <div data-test="inventory">
      ${usage.state === 'loading'
        ? html`<p>Loading…</p>`
        : usage.state === 'unavailable'
          ? html`<p class="muted">Fleet inventory ${usage.why}.</p>`
          : usage.value.usage.length === 0
            ? html`<p class="muted">No use recorded since ${time(usage.value.since)}.</p>`
            : html`<table class="inventory">
                <thead><tr><th>Principal</th><th>Version</th><th>Action</th><th>Count</th><th>First seen</th><th>Last seen</th></tr></thead>
                <tbody>
                  ${[...usage.value.usage]
                    .sort((a, b) => a.keyVersion - b.keyVersion || b.lastSeen.localeCompare(a.lastSeen))
                    .map(
                      (row) => html`<tr class=${row.keyVersion < key.primaryVersion ? 'old-version' : ''}>
                        <td>${row.principal}</td><td>v${row.keyVersion}</td><td>${row.action}</td><td>${row.count}</td>
                        <td>${time(row.firstSeen)}</td><td>${time(row.lastSeen)}</td>
                      </tr>`,
                    )}
                </tbody>
              </table>`}
    </div>
    <${ConfirmDialog}
      request=${confirm}
      onClose=${(done: boolean) => {
        setConfirm(null);
        if (done) load();
      }}
    />
  </section>`;
}
