/** The Keyhold console: a token pasted at login, kept in this tab's sessionStorage, sent as a bearer on every call. */
import { html, render } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { createApi, tokenStore } from './api.js';
import { ErrorLine, type Session } from './shared.js';
import type { Whoami } from './types.js';
import { AnomaliesPage } from './pages/anomalies.js';
import { AuditPage } from './pages/audit.js';
import { KeyPage } from './pages/key.js';
import { KeysPage } from './pages/keys.js';
import { SimulatePage } from './pages/simulate.js';
import { TokensPage } from './pages/tokens.js';

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const update = (): void => setHash(location.hash);
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return hash;
}

function Login({ onLogin, error }: { onLogin: (token: string) => void; error: unknown }): VNode {
  const [token, setToken] = useState('');
  return html`<main class="login">
    <h1>Keyhold console</h1>
    <form class="stacked" onSubmit=${(e: Event) => { e.preventDefault(); onLogin(token.trim()); }}>
      <label>API token <input type="password" name="token" autocomplete="off" value=${token} onInput=${(e: Event) => setToken((e.target as HTMLInputElement).value)} required /></label>
      <button type="submit" class="primary">Sign in</button>
    </form>
    <${ErrorLine} error=${error} />
    <p class="muted">The token stays in this tab (sessionStorage) and is sent only as an Authorization header to this server.</p>
  </main>`;
}

const PAGES = [
  ['#/keys', 'Keys'],
  ['#/audit', 'Audit'],
  ['#/anomalies', 'Anomalies'],
  ['#/simulate', 'Simulate'],
  ['#/tokens', 'Tokens'],
] as const;

function Page({ session, hash }: { session: Session; hash: string }): VNode {
  const keyMatch = /^#\/keys\/(.+)$/.exec(hash);
  if (keyMatch !== null) return html`<${KeyPage} session=${session} name=${decodeURIComponent(keyMatch[1]!)} />`;
  switch (hash) {
    case '#/audit':
      return html`<${AuditPage} session=${session} />`;
    case '#/anomalies':
      return html`<${AnomaliesPage} session=${session} />`;
    case '#/simulate':
      return html`<${SimulatePage} session=${session} />`;
    case '#/tokens':
      return html`<${TokensPage} session=${session} />`;
    default:
      return html`<${KeysPage} session=${session} />`;
  }
}

function App(): VNode {
  const [session, setSession] = useState<Session | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [checking, setChecking] = useState(tokenStore.read() !== null);
  const hash = useHash();

  const logout = (): void => {
    tokenStore.clear();
    setSession(undefined);
  };
  const login = async (token: string): Promise<void> => {
    setError(undefined);
    const api = createApi(token, logout);
    try {
      const me = await api.get<Whoami>('/v1/whoami');
      tokenStore.write(token);
      setSession({ api, me });
    } catch (caught) {
      tokenStore.clear();
      setError(caught);
    } finally {
      setChecking(false);
    }
  };
  useEffect(() => {
    const saved = tokenStore.read();
    if (saved !== null) void login(saved);
  }, []);

  if (checking) return html`<p class="muted">Signing in…</p>`;
  if (session === undefined) return html`<${Login} onLogin=${login} error=${error} />`;
  const current = hash.startsWith('#/keys/') ? '#/keys' : hash === '' ? '#/keys' : hash;
  return html`<div class="shell">
    <header>
      <strong class="brand">Keyhold</strong>
      <nav>${PAGES.map(([href, label]) => html`<a href=${href} class=${current === href ? 'current' : ''}>${label}</a>`)}</nav>
      <span class="who" data-test="whoami">${session.me.id}${session.me.admin ? ' (admin)' : ' (read-only unless granted)'}</span>
      <button type="button" onClick=${logout}>Sign out</button>
    </header>
    <main><${Page} session=${session} hash=${hash} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app')!);
