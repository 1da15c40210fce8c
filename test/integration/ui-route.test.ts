import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UI_CONTENT_SECURITY_POLICY, uiRoutes } from '../../src/http/routes/ui.js';

/** The route alone, over a throwaway bundle beside a secret file it must never serve. */
describe('the console route', () => {
  let app: FastifyInstance;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'keyhold-ui-'));
    mkdirSync(join(root, 'bundle', 'assets'), { recursive: true });
    writeFileSync(join(root, 'bundle', 'index.html'), '<!doctype html><title>console</title>');
    writeFileSync(join(root, 'bundle', 'app.js'), 'console.log(1)');
    writeFileSync(join(root, 'bundle', 'styles.css'), 'body{}');
    writeFileSync(join(root, 'bundle', 'assets', 'logo.svg'), '<svg/>');
    writeFileSync(join(root, 'bundle', 'notes.txt'), 'not a bundle type');
    writeFileSync(join(root, 'secret.js'), 'SECRET');
    app = Fastify();
    await app.register(uiRoutes({ directory: join(root, 'bundle') }));
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('serves index.html for /ui and /ui/, with the CSP', async () => {
    for (const url of ['/ui', '/ui/']) {
      const response = await app.inject({ url });
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(response.headers['content-security-policy']).toBe(UI_CONTENT_SECURITY_POLICY);
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.body).toContain('<title>console</title>');
    }
  });

  it('serves each bundle file with its content type and the CSP', async () => {
    const cases = { '/ui/app.js': 'text/javascript; charset=utf-8', '/ui/styles.css': 'text/css; charset=utf-8', '/ui/assets/logo.svg': 'image/svg+xml' };
    for (const [url, type] of Object.entries(cases)) {
      const response = await app.inject({ url });
      expect(response.statusCode, url).toBe(200);
      expect(response.headers['content-type']).toBe(type);
      expect(response.headers['content-security-policy']).toBe(UI_CONTENT_SECURITY_POLICY);
    }
  });

  it('answers 404 for any path outside the bundle, however it is spelled', async () => {
    const attempts = [
      '/ui/../secret.js',
      '/ui/..%2fsecret.js',
      '/ui/%2e%2e/secret.js',
      '/ui/%2e%2e%2fsecret.js',
      '/ui/assets/../../secret.js',
      '/ui/assets%2f..%2f..%2fsecret.js',
      '/ui/..\\secret.js',
      '/ui/%5c..%5csecret.js',
      '/ui//etc/passwd',
      '/ui/%00index.html',
      '/ui/notes.txt',
      '/ui/missing.js',
      '/ui/assets',
    ];
    for (const url of attempts) {
      const response = await app.inject({ url });
      expect(response.statusCode, url).toBe(404);
      expect(response.body, url).not.toContain('SECRET');
    }
  });

  it('answers 404 for everything when the bundle is missing', async () => {
    const empty = Fastify();
    await empty.register(uiRoutes({ directory: join(root, 'no-such-dir') }));
    expect((await empty.inject({ url: '/ui' })).statusCode).toBe(404);
    await empty.close();
  });
});
