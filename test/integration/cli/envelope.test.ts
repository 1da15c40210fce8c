import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { CLI_IS_BUILT, cliServerPerSuite, runCli, spawnCli } from '../../helpers/cli.js';

describeEachDatabase('keyhold encrypt and decrypt', (kind) => {
  const server = cliServerPerSuite(kind);
  beforeAll(async () => {
    await server.t.call('POST', '/v1/keys', { name: 'files' });
  });

  it.skipIf(!CLI_IS_BUILT)('round-trips stdin to stdout under a context, and refuses a message whose context differs', async () => {
    const plaintext = 'card 4111 1111 1111 1111\n';
    const sealed = await runCli(['encrypt', '--key', 'files', '--context', 'tenant=acme', '--context', 'file=a.txt'], { env: server.env, input: plaintext });
    expect(sealed.code, sealed.stderr).toBe(0);
    expect(sealed.stdoutBytes.includes(Buffer.from('4111 1111'))).toBe(false);

    const opened = await runCli(['decrypt', '--context', 'tenant=acme'], { env: server.env, input: sealed.stdoutBytes });
    expect(opened.code, opened.stderr).toBe(0);
    expect(opened.stdout).toBe(plaintext);

    const wrong = await runCli(['decrypt', '--context', 'tenant=other'], { env: server.env, input: sealed.stdoutBytes });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^keyhold: KH_SDK_DECRYPTION_FAILED: .+\n$/);
    expect(wrong.stdout).toBe('');
  });

  it.skipIf(!CLI_IS_BUILT)('round-trips a file to a file, and leaves no output file when decryption fails', async () => {
    const dir = server.t.store.dataDir;
    const input = join(dir, 'report.csv');
    writeFileSync(input, 'a,b\n1,2\n'.repeat(50_000));
    const sealed = await runCli(['encrypt', '--key', 'files', '--context', 'file=report.csv', input, '-o', join(dir, 'report.csv.khe')], { env: server.env });
    expect(sealed.code, sealed.stderr).toBe(0);
    expect(sealed.stdout).toBe('');
    const opened = await runCli(['decrypt', '--context', 'file=report.csv', join(dir, 'report.csv.khe'), '-o', join(dir, 'report.out')], { env: server.env });
    expect(opened.code, opened.stderr).toBe(0);
    expect(readFileSync(join(dir, 'report.out')).equals(readFileSync(input))).toBe(true);

    const tampered = readFileSync(join(dir, 'report.csv.khe'));
    tampered[tampered.length - 100]! ^= 1;
    writeFileSync(join(dir, 'tampered.khe'), tampered);
    const refused = await runCli(['decrypt', join(dir, 'tampered.khe'), '-o', join(dir, 'tampered.out')], { env: server.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^keyhold: KH_SDK_DECRYPTION_FAILED: /);
    expect(existsSync(join(dir, 'tampered.out'))).toBe(false);
    expect(readdirSync(dir).filter((name) => name.endsWith('.part'))).toEqual([]);
  });

  it.skipIf(!CLI_IS_BUILT)('inspect names the key id and version of messages at rest without the service, and --version picks those under one', async () => {
    await server.t.call('POST', '/v1/keys', { name: 'archive' });
    const dir = server.t.store.dataDir;
    const seal = async (name: string) => {
      const sealed = await runCli(['encrypt', '--key', 'archive', '--context', `file=${name}`, '-o', join(dir, name)], { env: server.env, input: name });
      expect(sealed.code, sealed.stderr).toBe(0);
      return join(dir, name);
    };
    const old = await seal('old.khe');
    expect((await server.t.call('POST', '/v1/keys/archive/rotate')).status).toBe(200);
    const fresh = await seal('new.khe');
    const keyId = (await server.t.call('GET', '/v1/keys/archive')).body.id as string;

    // No address and no token: it reads headers only.
    const all = await runCli(['inspect', old, fresh, '--json'], { env: {} });
    expect(all.code, all.stderr).toBe(0);
    expect(JSON.parse(all.stdout)).toEqual([
      { file: old, keyId, keyVersion: 1, context: { file: 'old.khe' } },
      { file: fresh, keyId, keyVersion: 2, context: { file: 'new.khe' } },
    ]);
    const first = await runCli(['inspect', '--version', '1', old, fresh], { env: {} });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`^${old.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} +${keyId} +1 +file=old.khe$`, 'm'));
    expect(first.stdout).not.toContain('new.khe');

    writeFileSync(join(dir, 'plain.txt'), 'not a message');
    const refused = await runCli(['inspect', join(dir, 'plain.txt')], { env: {} });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^keyhold: KH_CLI_NOT_A_MESSAGE: .*plain\.txt/);
    expect((await runCli(['inspect', join(dir, 'missing.khe')], { env: {} })).stderr).toMatch(/^keyhold: KH_CLI_FILE: /);
    expect((await runCli(['inspect'], { env: {} })).code).toBe(2);
  });

  it.skipIf(!CLI_IS_BUILT)('interrupted while writing -o, it leaves neither the output nor its partial file', async () => {
    const dir = join(server.t.store.dataDir, 'interrupted');
    mkdirSync(dir);
    const input = new PassThrough();
    const { child, done } = spawnCli(['encrypt', '--key', 'files', '-o', join(dir, 'out.khe')], { env: server.env, input });
    input.write(Buffer.alloc(256 * 1024, 1));
    for (let i = 0; i < 200 && !readdirSync(dir).some((name) => name.endsWith('.part')); i += 1) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(readdirSync(dir).some((name) => name.endsWith('.part'))).toBe(true);
    child.kill('SIGINT');
    const result = await done;
    input.destroy();
    expect(result.code).not.toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  });

  it.skipIf(!CLI_IS_BUILT)('answers a missing key with exit status 4, a missing --key with 2', async () => {
    const missing = await runCli(['encrypt', '--key', 'no-such-key'], { env: server.env, input: 'x' });
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/^keyhold: KH_ERR_KEY_NOT_FOUND: /);
    expect((await runCli(['encrypt'], { env: server.env, input: 'x' })).code).toBe(2);
    expect((await runCli(['encrypt', '--key', 'files', '--context', 'novalue'], { env: server.env, input: 'x' })).code).toBe(2);
  });
});

/** Deterministic bytes, generated as they are read: the test holds no copy of them. */
function generated(bytes: number): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  const block = createHash('sha512').update('keyhold').digest();
  let sent = 0;
  const stream = new Readable({
    read() {
      if (sent >= bytes) return void this.push(null);
      const chunk = Buffer.alloc(Math.min(1 << 20, bytes - sent));
      for (let at = 0; at < chunk.length; at += block.length) block.copy(chunk, at, 0, Math.min(block.length, chunk.length - at));
      chunk.writeUInt32BE(sent / (1 << 20), 0);
      sent += chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

/** The largest resident set of a running process, sampled from /proc until it exits. */
function peakRss(pid: number): { stop: () => number } {
  let peak = 0;
  const sample = () => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match !== null) peak = Math.max(peak, Number(match[1]) * 1024);
    } catch {
      // exited
    }
  };
  const timer = setInterval(sample, 50);
  return { stop: () => (clearInterval(timer), peak) };
}

// The database plays no part in the streaming: SQLite only.
describe('keyhold encrypt and decrypt of a large stream', () => {
  const server = cliServerPerSuite('sqlite');
  beforeAll(async () => {
    await server.t.call('POST', '/v1/keys', { name: 'bulk' });
  });

  const SIZE = 256 * 1024 * 1024;
  it.skipIf(!CLI_IS_BUILT)('streams 256 MiB through encrypt and decrypt in bounded memory', { timeout: 120_000 }, async () => {
    const sealedPath = join(server.t.store.dataDir, 'bulk.khe');
    const source = generated(SIZE);
    const encrypt = spawnCli(['encrypt', '--key', 'bulk', '--context', 'job=backup', '-o', sealedPath], { env: server.env, input: source.stream });
    const encryptRss = peakRss(encrypt.child.pid!);
    const sealed = await encrypt.done;
    const encryptPeak = encryptRss.stop();
    expect(sealed.code, sealed.stderr).toBe(0);
    expect(statSync(sealedPath).size).toBeGreaterThan(SIZE);

    const decrypt = spawnCli(['decrypt', '--context', 'job=backup', sealedPath], { env: server.env, ownStdout: true });
    const decryptRss = peakRss(decrypt.child.pid!);
    const hash = createHash('sha256');
    let bytes = 0;
    decrypt.child.stdout!.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    const opened = await decrypt.done;
    const decryptPeak = decryptRss.stop();
    expect(opened.code, opened.stderr).toBe(0);
    expect(bytes).toBe(SIZE);
    expect(hash.digest('hex')).toBe(source.digest());
    // Node itself takes ~50-70 MiB; buffering the data would take over 256 MiB.
    expect(encryptPeak).toBeLessThan(160 * 1024 * 1024);
    expect(decryptPeak).toBeLessThan(160 * 1024 * 1024);
  });
});
