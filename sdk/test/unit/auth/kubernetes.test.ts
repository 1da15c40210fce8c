import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_KUBERNETES_TOKEN_PATH, kubernetesServiceAccount } from '../../../src/auth/kubernetes.js';
import { ConfigurationError, CredentialsError } from '../../../src/errors.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'keyhold-sdk-k8s-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let time = 1_000;
  return { now: () => time, advance: (ms) => void (time += ms) };
}

/**
 * Lays out a projected volume as the kubelet's atomic writer does: the files live in a timestamped directory,
 * `..data` is a symlink to it, and each file name is a symlink through `..data`. Rotation writes a new directory
 * and renames a new `..data` over the old one, which swaps every file at once.
 */
function projectedVolume(root: string): { path: string; rotate: (token: string) => void } {
  let version = 0;
  const write = (token: string): void => {
    version += 1;
    const data = `..2026_01_15_12_00_0${version}.000000${version}`;
    mkdirSync(join(root, data));
    writeFileSync(join(root, data, 'keyhold'), token);
    symlinkSync(data, join(root, '..data_tmp'));
    renameSync(join(root, '..data_tmp'), join(root, '..data'));
    if (version > 1) rmSync(join(root, `..2026_01_15_12_00_0${version - 1}.000000${version - 1}`), { recursive: true });
  };
  write('first.jwt.token\n');
  symlinkSync(join('..data', 'keyhold'), join(root, 'keyhold'));
  return { path: join(root, 'keyhold'), rotate: write };
}

describe('kubernetesServiceAccount', () => {
  it('sends the token in the file as a bearer credential, without its trailing newline', async () => {
    writeFileSync(join(dir, 'token'), 'eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl\n');
    const credentials = await kubernetesServiceAccount({ tokenPath: join(dir, 'token') }).credentials();
    expect(credentials).toEqual({ headers: { authorization: 'Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl' } });
  });

  it('reads the default projected token path unless told otherwise', () => {
    expect(DEFAULT_KUBERNETES_TOKEN_PATH).toBe('/var/run/secrets/tokens/keyhold');
  });

  it('keeps the token it read until refreshIntervalMs has passed, then reads the file again', async () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'one');
    const clock = manualClock();
    const provider = kubernetesServiceAccount({ tokenPath: path, refreshIntervalMs: 60_000, now: clock.now });
    expect((await provider.credentials()).headers.authorization).toBe('Bearer one');
    writeFileSync(path, 'two');
    clock.advance(59_999);
    expect((await provider.credentials()).headers.authorization).toBe('Bearer one');
    clock.advance(1);
    expect((await provider.credentials()).headers.authorization).toBe('Bearer two');
  });

  it('sees a token the kubelet rotated by swapping the ..data symlink', async () => {
    const volume = projectedVolume(dir);
    const clock = manualClock();
    const provider = kubernetesServiceAccount({ tokenPath: volume.path, refreshIntervalMs: 60_000, now: clock.now });
    expect((await provider.credentials()).headers.authorization).toBe('Bearer first.jwt.token');
    volume.rotate('second.jwt.token\n');
    clock.advance(60_000);
    expect((await provider.credentials()).headers.authorization).toBe('Bearer second.jwt.token');
    volume.rotate('third.jwt.token\n');
    clock.advance(60_000);
    expect((await provider.credentials()).headers.authorization).toBe('Bearer third.jwt.token');
  });

  it('reads the file again at once after invalidate()', async () => {
    const volume = projectedVolume(dir);
    const clock = manualClock();
    const provider = kubernetesServiceAccount({ tokenPath: volume.path, now: clock.now });
    await provider.credentials();
    volume.rotate('rotated.jwt.token');
    provider.invalidate();
    expect((await provider.credentials()).headers.authorization).toBe('Bearer rotated.jwt.token');
  });

  it('shares one read among concurrent callers', async () => {
    let reads = 0;
    let finish!: (token: string) => void;
    const provider = kubernetesServiceAccount({
      tokenPath: '/fake',
      readFile: () => {
        reads += 1;
        return new Promise<string>((resolve) => {
          finish = resolve;
        });
      },
    });
    const pending = Array.from({ length: 5 }, () => provider.credentials());
    finish('shared');
    const all = await Promise.all(pending);
    expect(reads).toBe(1);
    expect(new Set(all).size).toBe(1);
    expect(all[0]?.headers.authorization).toBe('Bearer shared');
  });

  it('does not take a read that began before invalidate() as fresh', async () => {
    const finishers: Array<(token: string) => void> = [];
    const provider = kubernetesServiceAccount({
      tokenPath: '/fake',
      readFile: () => new Promise<string>((resolve) => finishers.push(resolve)),
    });
    const early = provider.credentials();
    provider.invalidate();
    finishers[0]?.('before');
    expect((await early).headers.authorization).toBe('Bearer before');
    const late = provider.credentials();
    expect(finishers).toHaveLength(2);
    finishers[1]?.('after');
    expect((await late).headers.authorization).toBe('Bearer after');
  });

  it('fails with CredentialsError naming the path when the file is missing', async () => {
    const path = join(dir, 'absent');
    const error = await kubernetesServiceAccount({ tokenPath: path }).credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toContain('ENOENT');
  });

  it('fails with CredentialsError when the file is empty or only whitespace', async () => {
    for (const content of ['', '\n', '  \n\t']) {
      writeFileSync(join(dir, 'token'), content);
      const error = await kubernetesServiceAccount({ tokenPath: join(dir, 'token') }).credentials().catch((e: unknown) => e);
      expect(error, JSON.stringify(content)).toBeInstanceOf(CredentialsError);
      expect((error as Error).message).toContain('is empty');
    }
  });

  it('fails without quoting the content when the file does not hold a token', async () => {
    writeFileSync(join(dir, 'token'), 'not a token: secret-words');
    const error = await kubernetesServiceAccount({ tokenPath: join(dir, 'token') }).credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).not.toContain('secret-words');
  });

  it('refuses a path that is not a regular file', async () => {
    const error = await kubernetesServiceAccount({ tokenPath: dir }).credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(dir);
  });

  it('refuses a file far larger than any token', async () => {
    writeFileSync(join(dir, 'token'), 'a'.repeat(64 * 1024 + 1));
    await expect(kubernetesServiceAccount({ tokenPath: join(dir, 'token') }).credentials()).rejects.toBeInstanceOf(CredentialsError);
  });

  it('tries the file again on the next call after a failed read', async () => {
    const path = join(dir, 'token');
    const provider = kubernetesServiceAccount({ tokenPath: path });
    await expect(provider.credentials()).rejects.toBeInstanceOf(CredentialsError);
    writeFileSync(path, 'late');
    expect((await provider.credentials()).headers.authorization).toBe('Bearer late');
  });

  it('does not go on using the old token when the file disappears after the interval', async () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'old');
    const clock = manualClock();
    const provider = kubernetesServiceAccount({ tokenPath: path, refreshIntervalMs: 10, now: clock.now });
    await provider.credentials();
    rmSync(path);
    clock.advance(10);
    await expect(provider.credentials()).rejects.toBeInstanceOf(CredentialsError);
  });

  it.each([
    ['an empty tokenPath', { tokenPath: '' }],
    ['a negative refreshIntervalMs', { refreshIntervalMs: -1 }],
    ['a refreshIntervalMs that is not a number', { refreshIntervalMs: Number.NaN }],
  ])('refuses %s with ConfigurationError', (_name, options) => {
    expect(() => kubernetesServiceAccount(options)).toThrow(ConfigurationError);
  });
});
