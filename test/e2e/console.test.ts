import { existsSync, mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app.js';
import { ManualClock } from '../helpers/clock.js';
import { httpCall } from '../helpers/http.js';

/**
 * The console in a real browser (Debian's chromium, driven by playwright-core) against a real listening server. The
 * anomalies page buckets by the browser's clock, so the server runs on the wall clock here, not a manual one.
 */
const CHROMIUM = process.env.KEYHOLD_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const ARTIFACTS = 'test-artifacts/console';

class WallClock extends ManualClock {
  override now(): Date {
    return new Date();
  }
}

if (!haveChromium) {
  console.warn(`console.test.ts: skipped, no chromium at ${CHROMIUM} (apt-get install chromium, or set KEYHOLD_CHROMIUM)`);
}

describeEachDatabase('the console in a browser', (kind) => {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  let page: Page;
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    t = await buildTestApp(kind, { clock: new WallClock() });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    // A workload that may use the key but not manage it, and an auditor who may only read.
    for (const name of ['app', 'auditor']) expect((await t.call('POST', '/v1/tokens', { name })).status).toBe(201);
    expect(
      (
        await t.call('PUT', '/v1/policies/console-test', {
          statements: [
            { sid: 'app-crypto', effect: 'allow', principals: ['token:app'], actions: ['encrypt', 'decrypt'], keys: ['payments'] },
            { sid: 'auditor-reads', effect: 'allow', principals: ['token:auditor'], actions: ['keys:read', 'audit:read', 'policies:read', 'tokens:read'], keys: ['*'] },
          ],
        })
      ).status,
    ).toBe(201);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('console', (message) => {
      if (/Content[- ]Security[- ]Policy|Refused to/i.test(message.text())) cspViolations.push(message.text());
    });
    page.on('pageerror', (error) => pageErrors.push(error.message));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}/${kind}-${name}.png`, fullPage: true });

  it.skipIf(!haveChromium)('logs in with a token, creates, rotates a key and disables its first version, and shows the audit, anomalies and inventory', async () => {
    // Log in.
    const response = await page.goto(`${base}/ui/`);
    expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.fill('input[name=token]', TEST_ADMIN_TOKEN);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-test=whoami]');
    expect(await page.textContent('[data-test=whoami]')).toContain('(admin)');
    expect(await page.context().cookies()).toEqual([]);

    // Create a key.
    await page.fill('input[name=key-name]', 'payments');
    await page.click('text=Create key');
    await page.waitForSelector('tr[data-key=payments]');
    // The listing counts versions (it does not list them).
    expect(await page.textContent('tr[data-key=payments]')).toContain('1 (1 enabled)');

    // A workload encrypts with v1 and reads it back: the inventory should name it.
    const appToken = await tokenOfName('app');
    const sealed = await api('POST', '/v1/keys/payments/encrypt', appToken, { plaintext: Buffer.from('card').toString('base64'), context: { tenant: 't-1' } });
    expect(sealed.status).toBe(200);
    expect((await api('POST', '/v1/keys/payments/decrypt', appToken, { ciphertext: sealed.body.ciphertext, context: { tenant: 't-1' } })).status).toBe(200);

    // Rotate, with a confirmation that names the key.
    await page.click('a:text-is("payments")');
    await page.waitForSelector('[data-test=primary]');
    await page.click('button:text-is("Rotate")');
    expect(await page.textContent('.dialog')).toContain('payments');
    await page.click('[data-test=confirm]');
    await page.waitForSelector('[data-test=primary]:text-is("v2")');

    // Disable version 1.
    await page.click('tr[data-version="1"] button:text-is("Disable")');
    expect(await page.textContent('.dialog')).toContain('v1 of key “payments”');
    await page.click('[data-test=confirm]');
    await page.waitForSelector('tr[data-version="1"] .state-disabled');

    // A denial (the workload may not rotate) and a burst of decryption failures (a wrong context).
    expect((await api('POST', '/v1/keys/payments/rotate', appToken, {})).status).toBe(403);
    const again = await api('POST', '/v1/keys/payments/encrypt', appToken, { plaintext: Buffer.from('card').toString('base64'), context: { tenant: 't-1' } });
    for (let i = 0; i < 6; i += 1) {
      const failed = await api('POST', '/v1/keys/payments/decrypt', appToken, { ciphertext: again.body.ciphertext, context: { tenant: 'other' } });
      expect(failed.body.code).toBe('KH_ERR_DECRYPTION_FAILED');
    }

    // The fleet inventory names the workload that still used version 1, on a highlighted row.
    await page.reload();
    await page.waitForSelector('table.inventory tr.old-version');
    const oldVersionRows = await page.$$eval('table.inventory tr.old-version', (rows) => rows.map((row) => row.textContent ?? ''));
    expect(oldVersionRows.length).toBeGreaterThan(0);
    for (const row of oldVersionRows) expect(row).toMatch(/token:app\s*v1/);
    expect(await page.textContent('table.coverage')).toContain('token:app');
    await shot('key');

    // The live stream shows the rotation and the denial, highlighted.
    await page.click('nav a:text-is("Audit")');
    await page.waitForSelector('tr[data-action="keys:rotate"].deny', { timeout: 10_000 });
    await page.waitForSelector('tr[data-action="keys:rotate"]:not(.deny)');
    await page.waitForSelector('tr.decrypt-failure');
    await shot('audit');

    // The anomalies page flags the decryption-failure spike of the workload.
    await page.click('nav a:text-is("Anomalies")');
    await page.waitForSelector('tr[data-principal="token:app"] .spike', { timeout: 15_000 });
    expect(await page.textContent('tr[data-principal="token:app"] .spike')).toContain('6 decryption failures');
    await shot('anomalies');

    await page.click('nav a:text-is("Tokens")');
    await page.waitForSelector('table.tokens >> text=auditor');
    await page.click('nav a:text-is("Simulate")');
    await page.fill('form.stacked input >> nth=0', 'token:app');
    await page.fill('form.stacked input >> nth=1', 'payments');
    await page.click('button:text-is("Simulate")');
    await page.waitForSelector('[data-test=verdict].allow');

    expect(cspViolations).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 90_000);

  it.skipIf(!haveChromium)('is read-only for a principal whose grants allow no change', async () => {
    const auditor = await tokenOfName('auditor');
    await page.click('button:text-is("Sign out")');
    await page.fill('input[name=token]', auditor);
    await page.click('button[type=submit]');
    await page.click('nav a:text-is("Keys")');
    await page.waitForSelector('tr[data-key=payments]');
    expect(await page.locator('text=Create key').count()).toBe(0);
    await page.click('a:text-is("payments")');
    await page.waitForSelector('text=Read-only');
    expect(await page.locator('button:text-is("Rotate")').count()).toBe(0);
    expect(await page.locator('tr[data-version] button').count()).toBe(0);
    await shot('read-only');
    expect(cspViolations).toEqual([]);
  });

  const api = (method: string, path: string, token: string, body?: unknown) => httpCall(base, method, path, token, body);

  /** A fresh secret for a token name the policy names (a revoked-and-reissued token keeps its principal id). */
  async function tokenOfName(name: string): Promise<string> {
    const list = await t.call('GET', '/v1/tokens');
    const existing = (list.body.tokens as { id: string; name: string }[]).find((token) => token.name === name);
    if (existing !== undefined) await t.call('DELETE', `/v1/tokens/${existing.id}`);
    const created = await t.call('POST', '/v1/tokens', { name });
    return created.body.token as string;
  }
});
