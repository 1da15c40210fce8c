import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_KUBERNETES_TOKEN_PATH } from '../../../src/auth/kubernetes.js';
import { clientOptionsFromEnv } from '../../../src/env.js';
import { ConfigurationError, CredentialsError } from '../../../src/errors.js';

const URL_ONLY = { KEYHOLD_URL: 'https://keyhold.example:8443' };
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'keyhold-sdk-env-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function configurationError(env: Record<string, string | undefined>): ConfigurationError {
  try {
    clientOptionsFromEnv(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return error as ConfigurationError;
  }
  throw new Error('expected a ConfigurationError');
}

describe('clientOptionsFromEnv: the service', () => {
  it('needs KEYHOLD_URL', () => {
    expect(configurationError({ KEYHOLD_TOKEN: 'kh_x' }).message).toContain('KEYHOLD_URL');
  });

  it('treats an empty variable as unset', () => {
    expect(configurationError({ KEYHOLD_URL: '', KEYHOLD_TOKEN: 'kh_x' }).message).toContain('KEYHOLD_URL is not set');
  });

  it('refuses a URL that does not parse, or another scheme, without echoing it', () => {
    const error = configurationError({ KEYHOLD_URL: 'https://user:hunter2@[bad', KEYHOLD_TOKEN: 'kh_x' });
    expect(error.message).toContain('KEYHOLD_URL');
    expect(error.message).not.toContain('hunter2');
    expect(configurationError({ KEYHOLD_URL: 'ftp://keyhold', KEYHOLD_TOKEN: 'kh_x' }).message).toContain('KEYHOLD_URL');
  });

  it('returns only what the environment set, frozen', () => {
    const options = clientOptionsFromEnv({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_x' });
    expect(Object.keys(options).sort()).toEqual(['auth', 'url']);
    expect(options.url).toBe('https://keyhold.example:8443');
    expect(Object.isFrozen(options)).toBe(true);
  });

  it('reads process.env when given no argument', async () => {
    const saved = { url: process.env.KEYHOLD_URL, token: process.env.KEYHOLD_TOKEN };
    process.env.KEYHOLD_URL = 'http://127.0.0.1:1';
    process.env.KEYHOLD_TOKEN = 'kh_from_process_env';
    try {
      const options = clientOptionsFromEnv();
      expect(options.url).toBe('http://127.0.0.1:1');
      expect((await options.auth.credentials()).headers.authorization).toBe('Bearer kh_from_process_env');
    } finally {
      for (const [name, value] of [['KEYHOLD_URL', saved.url], ['KEYHOLD_TOKEN', saved.token]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe('clientOptionsFromEnv: authentication', () => {
  it('uses KEYHOLD_TOKEN as an API token first, whatever else is set', async () => {
    const options = clientOptionsFromEnv({
      ...URL_ONLY,
      KEYHOLD_TOKEN: 'kh_first',
      KEYHOLD_SPIFFE_CERT_PATH: '/c',
      KEYHOLD_TOKEN_PATH: '/t',
    });
    expect(await options.auth.credentials()).toEqual({ headers: { authorization: 'Bearer kh_first' } });
  });

  it('refuses a KEYHOLD_TOKEN with whitespace, naming the variable but not the value', () => {
    const error = configurationError({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_secret_value\n' });
    expect(error.message).toContain('KEYHOLD_TOKEN');
    expect(error.message).not.toContain('kh_secret_value');
  });

  it('uses SPIFFE mutual TLS when the three KEYHOLD_SPIFFE_* paths are set', async () => {
    const options = clientOptionsFromEnv({
      ...URL_ONLY,
      KEYHOLD_SPIFFE_CERT_PATH: join(dir, 'svid.pem'),
      KEYHOLD_SPIFFE_KEY_PATH: join(dir, 'svid_key.pem'),
      KEYHOLD_SPIFFE_BUNDLE_PATH: join(dir, 'bundle.pem'),
      KEYHOLD_TOKEN_PATH: join(dir, 'token'),
    });
    // The files are absent: the error shows which provider was chosen, and that it reads lazily.
    const error = await options.auth.credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(join(dir, 'svid.pem'));
  });

  it('names the missing KEYHOLD_SPIFFE_* variables when only some are set', () => {
    const error = configurationError({ ...URL_ONLY, KEYHOLD_SPIFFE_CERT_PATH: '/c' });
    expect(error.message).toContain('KEYHOLD_SPIFFE_KEY_PATH');
    expect(error.message).toContain('KEYHOLD_SPIFFE_BUNDLE_PATH');
    expect(error.message).not.toContain('KEYHOLD_SPIFFE_CERT_PATH');
  });

  it('refuses SPIFFE mutual TLS with a plain-HTTP KEYHOLD_URL', () => {
    const error = configurationError({
      KEYHOLD_URL: 'http://keyhold',
      KEYHOLD_SPIFFE_CERT_PATH: '/c',
      KEYHOLD_SPIFFE_KEY_PATH: '/k',
      KEYHOLD_SPIFFE_BUNDLE_PATH: '/b',
    });
    expect(error.message).toContain('https:');
  });

  it('uses the Kubernetes projected token at KEYHOLD_TOKEN_PATH', async () => {
    writeFileSync(join(dir, 'token'), 'projected.jwt\n');
    const options = clientOptionsFromEnv({ ...URL_ONLY, KEYHOLD_TOKEN_PATH: join(dir, 'token') });
    expect((await options.auth.credentials()).headers.authorization).toBe('Bearer projected.jwt');
  });

  it.skipIf(existsSync(DEFAULT_KUBERNETES_TOKEN_PATH))('falls back to the Kubernetes projected token at its default path', async () => {
    const options = clientOptionsFromEnv(URL_ONLY);
    const error = await options.auth.credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(DEFAULT_KUBERNETES_TOKEN_PATH);
  });
});

describe('clientOptionsFromEnv: numbers', () => {
  it('reads KEYHOLD_TIMEOUT_MS and KEYHOLD_RETRIES as whole numbers', () => {
    const options = clientOptionsFromEnv({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_x', KEYHOLD_TIMEOUT_MS: '2500', KEYHOLD_RETRIES: ' 0 ' });
    expect(options.timeoutMs).toBe(2_500);
    expect(options.retries).toBe(0);
  });

  it.each([
    ['KEYHOLD_TIMEOUT_MS', 'abc'],
    ['KEYHOLD_TIMEOUT_MS', '0'],
    ['KEYHOLD_TIMEOUT_MS', '-5'],
    ['KEYHOLD_TIMEOUT_MS', '1.5'],
    ['KEYHOLD_TIMEOUT_MS', '1e4'],
    ['KEYHOLD_TIMEOUT_MS', '2147483648'],
    ['KEYHOLD_RETRIES', 'three'],
    ['KEYHOLD_RETRIES', '-1'],
    ['KEYHOLD_RETRIES', '11'],
  ])('refuses %s=%s, naming the variable', (name, value) => {
    const error = configurationError({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_x', [name]: value });
    expect(error.message).toContain(name);
  });
});

describe('clientOptionsFromEnv: KEYHOLD_CA_PATH', () => {
  it('reads the PEM file', () => {
    writeFileSync(join(dir, 'ca.pem'), PEM);
    const options = clientOptionsFromEnv({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_x', KEYHOLD_CA_PATH: join(dir, 'ca.pem') });
    expect(options.ca).toBe(PEM);
  });

  it('refuses a missing file, naming the variable', () => {
    const error = configurationError({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_x', KEYHOLD_CA_PATH: join(dir, 'absent.pem') });
    expect(error.message).toContain('KEYHOLD_CA_PATH');
    expect(error.message).toContain('ENOENT');
  });

  it('refuses a file without a PEM certificate', () => {
    writeFileSync(join(dir, 'ca.pem'), 'hello');
    expect(configurationError({ ...URL_ONLY, KEYHOLD_TOKEN: 'kh_x', KEYHOLD_CA_PATH: join(dir, 'ca.pem') }).message).toContain('KEYHOLD_CA_PATH');
  });

  it('refuses a CA with a plain-HTTP KEYHOLD_URL', () => {
    writeFileSync(join(dir, 'ca.pem'), PEM);
    const error = configurationError({ KEYHOLD_URL: 'http://keyhold', KEYHOLD_TOKEN: 'kh_x', KEYHOLD_CA_PATH: join(dir, 'ca.pem') });
    expect(error.message).toContain('KEYHOLD_CA_PATH');
  });
});
