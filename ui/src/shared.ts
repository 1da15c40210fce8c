import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { ApiError, type Api } from './api.js';
import type { Whoami } from './types.js';

/** What every page gets: the API with the caller's token, and who the caller is. */
export interface Session {
  readonly api: Api;
  readonly me: Whoami;
}

export function errorText(error: unknown): string {
  if (error instanceof ApiError) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

export function ErrorLine({ error }: { error: unknown }): VNode | null {
  return error === undefined || error === null ? null : html`<p class="error" role="alert">${errorText(error)}</p>`;
}

/**
 * Which of `actions` the caller may do on `key`. The admin may do anything. Any other principal asks the server's
 * policy simulation about itself; a principal that may not simulate (no policies:read) is treated as read-only.
 * The API enforces every decision anyway: this only hides buttons that would be refused.
 */
export function useAllowed(session: Session, actions: readonly string[], key?: string): Record<string, boolean> {
  const everything = Object.fromEntries(actions.map((action) => [action, session.me.admin]));
  const [allowed, setAllowed] = useState<Record<string, boolean>>(everything);
  const signature = `${actions.join(',')}|${key ?? ''}`;
  useEffect(() => {
    if (session.me.admin) return;
    let live = true;
    void Promise.all(
      actions.map(async (action) => {
        try {
          const result = await session.api.post<{ decision: string }>('/v1/policies/simulate', {
            principal: { id: session.me.id, type: session.me.type, attributes: session.me.attributes },
            action,
            ...(key === undefined ? {} : { key }),
          });
          return [action, result.decision === 'allow'] as const;
        } catch {
          return [action, false] as const;
        }
      }),
    ).then((entries) => {
      if (live) setAllowed(Object.fromEntries(entries));
    });
    return () => {
      live = false;
    };
  }, [signature]);
  return allowed;
}

export interface ConfirmRequest {
  readonly title: string;
  readonly body: string;
  readonly confirmLabel: string;
  readonly run: () => Promise<unknown>;
  readonly danger?: boolean;
}

/** A confirmation dialog that names what it acts on; the action runs only on "confirm". */
export function ConfirmDialog({ request, onClose }: { request: ConfirmRequest | null; onClose: (done: boolean) => void }): VNode | null {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  useEffect(() => {
    setBusy(false);
    setError(undefined);
  }, [request]);
  if (request === null) return null;
  const confirm = async (): Promise<void> => {
    setBusy(true);
    try {
      await request.run();
      onClose(true);
    } catch (caught) {
      setError(caught);
      setBusy(false);
    }
  };
  return html`<div class="backdrop">
    <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="confirm-title">
      <h2 id="confirm-title">${request.title}</h2>
      <p>${request.body}</p>
      <${ErrorLine} error=${error} />
      <div class="buttons">
        <button type="button" onClick=${() => onClose(false)} disabled=${busy}>Cancel</button>
        <button type="button" class=${request.danger === true ? 'danger' : 'primary'} data-test="confirm" onClick=${confirm} disabled=${busy}>
          ${request.confirmLabel}
        </button>
      </div>
    </div>
  </div>`;
}

export function time(value: string | null): string {
  return value === null ? '—' : new Date(value).toLocaleString();
}
