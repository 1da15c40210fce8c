import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';

/**
 * The console's policy: the page runs only the bundle it was served with and talks only to this origin. No inline
 * script or style is allowed, so an injected `<script>` or `style=` does nothing (CSP Level 3 §6.1); `frame-ancestors
 * 'none'` stops click-jacking; `form-action 'none'` and `base-uri 'none'` leave an injected form or base tag nowhere to go.
 */
export const UI_CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json; charset=utf-8',
};

interface UiFile {
  readonly type: string;
  readonly body: Buffer;
}

/**
 * The built bundle: `dist/ui/`, beside `dist/src/` when this file runs compiled, and under the repository's `dist/`
 * when it runs from source (the tests).
 */
export function defaultUiDirectory(): string {
  const compiled = import.meta.url.endsWith('.js');
  return fileURLToPath(new URL(compiled ? '../../../ui/' : '../../../dist/ui/', import.meta.url));
}

/**
 * Reads every file of the bundle once, into a map from its name (`app.js`, `assets/x.svg`) to its bytes. A request
 * is answered only by a lookup in that map, never by joining its path onto the file system, so `..`, encoded
 * slashes or a symlink cannot reach a file outside the bundle. A missing bundle is an empty map: `/ui` is then 404.
 */
export function loadUiFiles(directory: string): ReadonlyMap<string, UiFile> {
  const files = new Map<string, UiFile>();
  const walk = (relative: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(join(directory, relative));
    } catch {
      return;
    }
    for (const entry of entries) {
      const name = relative === '' ? entry : `${relative}/${entry}`;
      const stat = statSync(join(directory, name));
      if (stat.isDirectory()) walk(name);
      else if (stat.isFile() && CONTENT_TYPES[extname(entry)] !== undefined) {
        files.set(name, { type: CONTENT_TYPES[extname(entry)]!, body: readFileSync(join(directory, name)) });
      }
    }
  };
  walk('');
  return files;
}

export interface UiRouteOptions {
  /** Where the built bundle is; `defaultUiDirectory()` unless given. */
  readonly directory?: string;
}

/**
 * The console at `/ui`: static files only, public like `/healthz` (the page holds no data; every API call it makes
 * carries the bearer token the user pasted), each answer with the console's Content-Security-Policy.
 */
export function uiRoutes(options: UiRouteOptions = {}): FastifyPluginAsyncTypebox {
  return async (app) => {
    const files = loadUiFiles(options.directory ?? defaultUiDirectory());

    const send = (reply: FastifyReply, name: string): FastifyReply => {
      const file = files.get(name);
      if (file === undefined) {
        reply.callNotFound();
        return reply;
      }
      return reply
        .header('content-security-policy', UI_CONTENT_SECURITY_POLICY)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cross-origin-opener-policy', 'same-origin')
        .header('cache-control', name === 'index.html' ? 'no-cache' : 'public, max-age=300')
        .type(file.type)
        .send(file.body);
    };

    const config = { public: true };
    const schema = { hide: true };
    app.get('/ui', { config, schema }, async (_request, reply) => send(reply, 'index.html'));
    app.get('/ui/', { config, schema }, async (_request, reply) => send(reply, 'index.html'));
    app.get<{ Params: { '*': string } }>('/ui/*', { config, schema }, async (request, reply) => send(reply, request.params['*']));
  };
}
