import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, MIN_BOOTSTRAP_TOKEN_LENGTH, type Config, type Environment } from '../../src/config.js';
import { StartupError } from '../../src/errors.js';

const ROOT_KEY_BYTES = Buffer.alloc(32, 0x2a);
const ROOT_KEY = ROOT_KEY_BYTES.toString('base64');
const TOKEN = 'kh_bootstrap_' + 'T'.repeat(MIN_BOOTSTRAP_TOKEN_LENGTH);

/** The StartupError that `env` produces; fails the test if it loads. */
function startupError(env: Environment): StartupError {
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(StartupError);
  return caught as StartupError;
}

function inlineKeyBytes(config: Config): Buffer {
  if (config.rootKey.kind !== 'inline') throw new Error(`expected an inline root key, got ${config.rootKey.kind}`);
  return config.rootKey.key.copyInsecure();
}

describe('loadConfig defaults', () => {
  const config = loadConfig({});

  it('listens on 127.0.0.1 by default', () => {
    expect(config.host).toBe('127.0.0.1');
  });

  it('uses port 7780 by default', () => {
    expect(config.port).toBe(7780);
  });

  it('keeps data in ./data, resolved to an absolute path', () => {
    expect(config.dataDir).toBe(resolve('data'));
  });

  it('uses SQLite in the data directory by default', () => {
    expect(config.database).toEqual({ client: 'sqlite', filename: join(resolve('data'), 'keyhold.sqlite') });
  });

  it('keeps the root key in the data directory by default', () => {
    expect(config.rootKey).toEqual({ kind: 'data-dir', path: join(resolve('data'), 'root.key') });
  });

  it('has no previous root key by default', () => {
    expect(config.previousRootKey).toBeUndefined();
  });

  it('has no bootstrap token by default', () => {
    expect(config.bootstrapToken).toBeUndefined();
  });

  it('logs at info by default', () => {
    expect(config.logLevel).toBe('info');
  });

  it('has the documented timing defaults', () => {
    expect(config).toMatchObject({ cacheTtlMs: 5000, sweepIntervalMs: 60_000, databaseTimeoutMs: 5000 });
  });

  it('gives a shutdown 10 s to drain by default', () => {
    expect(config.shutdownTimeoutMs).toBe(10_000);
  });

  it('takes KEYHOLD_SHUTDOWN_TIMEOUT_MS, and refuses one that is not an integer from 100 to 600000', () => {
    expect(loadConfig({ KEYHOLD_SHUTDOWN_TIMEOUT_MS: '25000' }).shutdownTimeoutMs).toBe(25_000);
    for (const value of ['99', '600001', '10s', '-1']) {
      expect(startupError({ KEYHOLD_SHUTDOWN_TIMEOUT_MS: value }).message).toContain('KEYHOLD_SHUTDOWN_TIMEOUT_MS');
    }
  });

  it('treats empty strings as unset', () => {
    expect(
      loadConfig({
        KEYHOLD_HOST: '',
        KEYHOLD_PORT: '',
        KEYHOLD_DATA_DIR: '',
        KEYHOLD_DATABASE_URL: '',
        KEYHOLD_ROOT_KEY: '',
        KEYHOLD_ROOT_KEY_FILE: '',
        KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '',
        KEYHOLD_BOOTSTRAP_TOKEN: '',
        KEYHOLD_LOG_LEVEL: '',
      }),
    ).toEqual(config);
  });
});

describe('loadConfig values', () => {
  it('takes the host and port from the environment', () => {
    expect(loadConfig({ KEYHOLD_HOST: '0.0.0.0', KEYHOLD_PORT: '8443' })).toMatchObject({ host: '0.0.0.0', port: 8443 });
  });

  it.each(['0', '65535'])('accepts port %s', (port) => {
    expect(loadConfig({ KEYHOLD_PORT: port }).port).toBe(Number(port));
  });

  it.each(['65536', '-1', '80.5', '0x50', 'http', ' 80'])('refuses port %j', (port) => {
    expect(startupError({ KEYHOLD_PORT: port }).message).toContain('KEYHOLD_PORT');
  });

  it('resolves a relative data directory against the working directory and puts the defaults in it', () => {
    const config = loadConfig({ KEYHOLD_DATA_DIR: 'var/keyhold' });
    expect(config.dataDir).toBe(resolve('var/keyhold'));
    expect(config.database).toEqual({ client: 'sqlite', filename: join(resolve('var/keyhold'), 'keyhold.sqlite') });
    expect(config.rootKey).toEqual({ kind: 'data-dir', path: join(resolve('var/keyhold'), 'root.key') });
  });

  it('keeps an absolute data directory', () => {
    expect(loadConfig({ KEYHOLD_DATA_DIR: '/srv/keyhold' }).dataDir).toBe('/srv/keyhold');
  });

  it.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('accepts log level %s', (level) => {
    expect(loadConfig({ KEYHOLD_LOG_LEVEL: level }).logLevel).toBe(level);
  });

  it.each(['verbose', 'INFO'])('refuses log level %j', (level) => {
    expect(startupError({ KEYHOLD_LOG_LEVEL: level }).message).toContain('KEYHOLD_LOG_LEVEL');
  });

  it.each([
    ['KEYHOLD_CACHE_TTL_MS', '3600001'],
    ['KEYHOLD_SWEEP_INTERVAL_MS', '99'],
    ['KEYHOLD_DATABASE_TIMEOUT_MS', '120001'],
    ['KEYHOLD_DATABASE_TIMEOUT_MS', 'soon'],
  ])('refuses %s=%s', (name, value) => {
    expect(startupError({ [name]: value }).message).toContain(name);
  });
});

describe('loadConfig KEYHOLD_DATABASE_URL', () => {
  it('takes an absolute sqlite: path as is', () => {
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite:/var/lib/keyhold/db.sqlite' }).database).toEqual({
      client: 'sqlite',
      filename: '/var/lib/keyhold/db.sqlite',
    });
  });

  it('takes sqlite:///absolute/path as the absolute path', () => {
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite:///var/lib/keyhold/db.sqlite' }).database).toEqual({
      client: 'sqlite',
      filename: '/var/lib/keyhold/db.sqlite',
    });
  });

  it('resolves a relative sqlite: path against the working directory', () => {
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite:keyhold.db' }).database).toEqual({
      client: 'sqlite',
      filename: resolve('keyhold.db'),
    });
  });

  it('keeps sqlite::memory: as an in-memory database, in each URL form', () => {
    for (const url of ['sqlite::memory:', 'sqlite://:memory:', 'sqlite:///:memory:']) {
      expect(loadConfig({ KEYHOLD_DATABASE_URL: url }).database).toEqual({ client: 'sqlite', filename: ':memory:' });
    }
  });

  it('runs one worker on sqlite::memory: (a store inside one process), and refuses more', () => {
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite::memory:' }).workers).toBe(1);
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite://:memory:' }).workers).toBe(1);
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite:///:memory:' }).workers).toBe(1);
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite::memory:', KEYHOLD_WORKERS: '1' }).workers).toBe(1);
    expect(startupError({ KEYHOLD_DATABASE_URL: 'sqlite::memory:', KEYHOLD_WORKERS: '2' }).message).toContain(
      'KEYHOLD_WORKERS (--workers) must be 1 with sqlite::memory:',
    );
    expect(loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite:/tmp/keyhold.db', KEYHOLD_WORKERS: '2' }).workers).toBe(2);
  });

  it('refuses sqlite: without a path', () => {
    expect(startupError({ KEYHOLD_DATABASE_URL: 'sqlite:' }).message).toContain('KEYHOLD_DATABASE_URL');
  });

  it.each(['postgres://keyhold:pw@db.internal:5432/keyhold', 'postgresql://db.internal/keyhold?sslmode=require'])(
    'passes %s to the postgres client unchanged',
    (url) => {
      expect(loadConfig({ KEYHOLD_DATABASE_URL: url }).database).toEqual({ client: 'postgres', url });
    },
  );

  it('refuses a postgres:// URL that does not parse', () => {
    expect(startupError({ KEYHOLD_DATABASE_URL: 'postgres://user:pw@[::1/keyhold' }).message).toContain(
      'KEYHOLD_DATABASE_URL is not a valid postgres:// URL',
    );
  });

  it.each(['mysql://db/keyhold', 'keyhold.sqlite', 'POSTGRES://db/keyhold'])('refuses the unsupported URL %j', (url) => {
    expect(startupError({ KEYHOLD_DATABASE_URL: url }).message).toContain(
      'KEYHOLD_DATABASE_URL must start with postgres://, postgresql:// or sqlite:',
    );
  });
});

describe('loadConfig root key', () => {
  it('accepts KEYHOLD_ROOT_KEY as the base64 of 32 bytes', () => {
    expect(inlineKeyBytes(loadConfig({ KEYHOLD_ROOT_KEY: ROOT_KEY }))).toEqual(ROOT_KEY_BYTES);
  });

  it('accepts KEYHOLD_ROOT_KEY with a trailing newline', () => {
    expect(inlineKeyBytes(loadConfig({ KEYHOLD_ROOT_KEY: `${ROOT_KEY}\n` }))).toEqual(ROOT_KEY_BYTES);
  });

  it.each([
    ['16 bytes', Buffer.alloc(16, 1).toString('base64')],
    ['hex', ROOT_KEY_BYTES.toString('hex')],
    ['unpadded base64', ROOT_KEY.replace(/=+$/, '')],
    ['text', 'correct horse battery staple'],
  ])('refuses a KEYHOLD_ROOT_KEY of %s', (_description, value) => {
    expect(startupError({ KEYHOLD_ROOT_KEY: value }).message).toContain(
      'KEYHOLD_ROOT_KEY must be the base64 encoding of exactly 32 bytes',
    );
  });

  it('takes KEYHOLD_ROOT_KEY_FILE as a file source, resolved to an absolute path', () => {
    expect(loadConfig({ KEYHOLD_ROOT_KEY_FILE: 'secrets/root.key' }).rootKey).toEqual({
      kind: 'file',
      path: resolve('secrets/root.key'),
    });
  });

  it('refuses KEYHOLD_ROOT_KEY and KEYHOLD_ROOT_KEY_FILE together', () => {
    expect(startupError({ KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_ROOT_KEY_FILE: '/run/secrets/root.key' }).message).toContain(
      'Set KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE, not both',
    );
  });

  it('takes KEYHOLD_PREVIOUS_ROOT_KEY_FILE, resolved to an absolute path, beside the primary root key', () => {
    const config = loadConfig({ KEYHOLD_ROOT_KEY_FILE: '/run/secrets/root-new.key', KEYHOLD_PREVIOUS_ROOT_KEY_FILE: 'secrets/root-old.key' });
    expect(config.rootKey).toEqual({ kind: 'file', path: '/run/secrets/root-new.key' });
    expect(config.previousRootKey).toEqual({ kind: 'file', path: resolve('secrets/root-old.key') });
    expect(loadConfig({ KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '/run/old.key' }).previousRootKey).toEqual({ kind: 'file', path: '/run/old.key' });
  });

  it('refuses KEYHOLD_PREVIOUS_ROOT_KEY_FILE without a configured primary root key', () => {
    expect(startupError({ KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '/run/secrets/root-old.key' }).message).toContain(
      'KEYHOLD_PREVIOUS_ROOT_KEY_FILE needs the new root key in KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE',
    );
  });

  it('refuses KEYHOLD_PREVIOUS_ROOT_KEY_FILE naming the primary root key file', () => {
    expect(
      startupError({ KEYHOLD_ROOT_KEY_FILE: '/run/secrets/root.key', KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '/run/secrets/../secrets/root.key' })
        .message,
    ).toContain('KEYHOLD_PREVIOUS_ROOT_KEY_FILE must name another file than KEYHOLD_ROOT_KEY_FILE');
  });
});

describe('loadConfig PKCS#11 root key', () => {
  const TOKEN_ENV = { KEYHOLD_PKCS11_LIBRARY: '/usr/lib/softhsm/libsofthsm2.so', KEYHOLD_PKCS11_TOKEN_LABEL: 'keyhold', KEYHOLD_PKCS11_PIN: 'pin-1618' };
  const HSM = { ...TOKEN_ENV, KEYHOLD_ROOT_KEY_PROVIDER: 'pkcs11', KEYHOLD_PKCS11_KEY_LABEL: 'root-2026' };

  it('takes the root key from the token when KEYHOLD_ROOT_KEY_PROVIDER=pkcs11, with the PIN held as secret bytes', () => {
    const config = loadConfig(HSM);
    expect(config.rootKey).toEqual({ kind: 'pkcs11', keyLabel: 'root-2026' });
    expect(config.pkcs11).toMatchObject({ library: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'keyhold', pin: { kind: 'inline' } });
    expect(config.pkcs11?.pin.kind === 'inline' && config.pkcs11.pin.pin.copyInsecure().toString()).toBe('pin-1618');
    expect(JSON.stringify(config)).not.toContain('pin-1618');
    expect(Object.isFrozen(config.pkcs11)).toBe(true);
  });

  it('takes KEYHOLD_PKCS11_PIN_FILE as a file, resolved to an absolute path', () => {
    const { KEYHOLD_PKCS11_PIN: _pin, ...rest } = HSM;
    expect(loadConfig({ ...rest, KEYHOLD_PKCS11_PIN_FILE: 'secrets/pin' }).pkcs11?.pin).toEqual({ kind: 'file', path: resolve('secrets/pin') });
  });

  it('is the local provider by default, with no token', () => {
    expect(loadConfig({}).pkcs11).toBeUndefined();
    expect(loadConfig({ KEYHOLD_ROOT_KEY_PROVIDER: 'local' }).rootKey.kind).toBe('data-dir');
  });

  it.each([
    ['an unknown provider', { KEYHOLD_ROOT_KEY_PROVIDER: 'kms' }, 'KEYHOLD_ROOT_KEY_PROVIDER must be one of local, pkcs11'],
    ['pkcs11 without a key label', { ...HSM, KEYHOLD_PKCS11_KEY_LABEL: '' }, 'KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 needs KEYHOLD_PKCS11_KEY_LABEL'],
    ['pkcs11 without the token', { KEYHOLD_ROOT_KEY_PROVIDER: 'pkcs11', KEYHOLD_PKCS11_KEY_LABEL: 'root' }, 'KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 needs KEYHOLD_PKCS11_LIBRARY'],
    ['pkcs11 with a root key too', { ...HSM, KEYHOLD_ROOT_KEY: ROOT_KEY }, 'KEYHOLD_ROOT_KEY and KEYHOLD_ROOT_KEY_FILE are for KEYHOLD_ROOT_KEY_PROVIDER=local'],
    ['a key label without the pkcs11 provider', { ...TOKEN_ENV, KEYHOLD_PKCS11_KEY_LABEL: 'root' }, 'KEYHOLD_PKCS11_KEY_LABEL needs KEYHOLD_ROOT_KEY_PROVIDER=pkcs11'],
    ['a token without its library', { KEYHOLD_PKCS11_TOKEN_LABEL: 'keyhold', KEYHOLD_PKCS11_PIN: 'p' }, 'The PKCS#11 token also needs KEYHOLD_PKCS11_LIBRARY'],
    ['a token without a PIN', { KEYHOLD_PKCS11_LIBRARY: '/x.so', KEYHOLD_PKCS11_TOKEN_LABEL: 'keyhold' }, 'also needs KEYHOLD_PKCS11_PIN or KEYHOLD_PKCS11_PIN_FILE'],
    ['both PIN variables', { ...HSM, KEYHOLD_PKCS11_PIN_FILE: '/run/pin' }, 'Set KEYHOLD_PKCS11_PIN or KEYHOLD_PKCS11_PIN_FILE, not both'],
    ['a previous key label without the token', { KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: 'old' }, 'KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL needs KEYHOLD_PKCS11_LIBRARY'],
    ['a previous key label that is the primary', { ...HSM, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: 'root-2026' }, 'must name another key than KEYHOLD_PKCS11_KEY_LABEL'],
    ['two previous keys', { ...HSM, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: 'old', KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '/run/old.key' }, 'not both: a rotation moves from one key'],
    ['a previous key label beside the development key', { ...TOKEN_ENV, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: 'old' }, 'KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL needs the new root key'],
  ])('refuses %s', (_title, env, message) => {
    const error = startupError(env);
    expect(error.message).toContain(message);
    expect(error.message).not.toContain('pin-1618');
  });

  it('takes an old HSM key as the previous key of a rotation to a file, and a file as the previous key of one to the HSM', () => {
    expect(loadConfig({ ...TOKEN_ENV, KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: 'root-2025' }).previousRootKey).toEqual({
      kind: 'pkcs11',
      keyLabel: 'root-2025',
    });
    expect(loadConfig({ ...HSM, KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '/run/old.key' }).previousRootKey).toEqual({ kind: 'file', path: '/run/old.key' });
  });
});

describe('loadConfig bootstrap token', () => {
  it(`accepts a token of exactly ${MIN_BOOTSTRAP_TOKEN_LENGTH} characters`, () => {
    const token = 'a'.repeat(MIN_BOOTSTRAP_TOKEN_LENGTH);
    expect(loadConfig({ KEYHOLD_BOOTSTRAP_TOKEN: token }).bootstrapToken).toBe(token);
  });

  it(`refuses a token of ${MIN_BOOTSTRAP_TOKEN_LENGTH - 1} characters`, () => {
    expect(startupError({ KEYHOLD_BOOTSTRAP_TOKEN: 'a'.repeat(MIN_BOOTSTRAP_TOKEN_LENGTH - 1) }).message).toContain(
      `KEYHOLD_BOOTSTRAP_TOKEN must be at least ${MIN_BOOTSTRAP_TOKEN_LENGTH} characters`,
    );
  });

  it.each([
    ['a space', `${TOKEN} x`],
    ['a tab', `${TOKEN}\t`],
    ['non-ASCII', `${TOKEN}é`],
  ])('refuses a token containing %s', (_description, token) => {
    expect(startupError({ KEYHOLD_BOOTSTRAP_TOKEN: token }).message).toContain(
      'KEYHOLD_BOOTSTRAP_TOKEN must be printable ASCII without spaces',
    );
  });
});

describe('loadConfig bootstrap token shape', () => {
  it('refuses a token shaped like a JWT, which the Kubernetes authenticator would claim', () => {
    expect(startupError({ KEYHOLD_BOOTSTRAP_TOKEN: `eyJ${TOKEN}` }).message).toContain('must not start with "eyJ"');
  });
});

describe('loadConfig TLS', () => {
  it('turns TLS on with a certificate and a key, resolved to absolute paths', () => {
    expect(loadConfig({ KEYHOLD_TLS_CERT_FILE: 'tls/cert.pem', KEYHOLD_TLS_KEY_FILE: 'tls/key.pem' }).tls).toEqual({
      certFile: resolve('tls/cert.pem'),
      keyFile: resolve('tls/key.pem'),
      clientCaFile: undefined,
    });
  });

  it('leaves TLS off without a certificate and key', () => {
    expect(loadConfig({}).tls).toBeUndefined();
  });

  it('refuses a certificate without a key', () => {
    expect(startupError({ KEYHOLD_TLS_CERT_FILE: 'cert.pem' }).message).toContain(
      'Set both KEYHOLD_TLS_CERT_FILE and KEYHOLD_TLS_KEY_FILE',
    );
  });

  it('refuses a client CA without TLS', () => {
    expect(startupError({ KEYHOLD_TLS_CLIENT_CA_FILE: 'ca.pem' }).message).toContain(
      'KEYHOLD_TLS_CLIENT_CA_FILE needs KEYHOLD_TLS_CERT_FILE and KEYHOLD_TLS_KEY_FILE',
    );
  });
});

describe('loadConfig errors', () => {
  it('reports every invalid value together in one StartupError', () => {
    const error = startupError({
      KEYHOLD_PORT: 'eighty',
      KEYHOLD_LOG_LEVEL: 'loud',
      KEYHOLD_DATABASE_URL: 'mysql://db/keyhold',
      KEYHOLD_ROOT_KEY: 'short',
      KEYHOLD_BOOTSTRAP_TOKEN: 'short',
      KEYHOLD_CACHE_TTL_MS: '-5',
    });
    expect(error.name).toBe('StartupError');
    expect(error.message.startsWith('Invalid configuration:')).toBe(true);
    for (const name of [
      'KEYHOLD_PORT',
      'KEYHOLD_LOG_LEVEL',
      'KEYHOLD_DATABASE_URL',
      'KEYHOLD_ROOT_KEY',
      'KEYHOLD_BOOTSTRAP_TOKEN',
      'KEYHOLD_CACHE_TTL_MS',
    ]) {
      expect(error.message).toContain(name);
    }
    expect(error.message.split('\n  - ')).toHaveLength(7);
  });

  it('never puts the root key, the bootstrap token or a database password in the message', () => {
    const badRootKey = 'c2VjcmV0LXJvb3Qta2V5LXRoYXQtaXMtdG9vLXNob3J0';
    const shortToken = 'tok3n-secret-value';
    const spacedToken = `${'s3cr3t-'.repeat(6)} tail`;
    const messages = [
      startupError({ KEYHOLD_ROOT_KEY: badRootKey, KEYHOLD_BOOTSTRAP_TOKEN: shortToken }).message,
      startupError({ KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_ROOT_KEY_FILE: '/run/k', KEYHOLD_BOOTSTRAP_TOKEN: spacedToken })
        .message,
      startupError({ KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_DATABASE_URL: 'postgres://kh:hunter2-pw@[::1/keyhold' }).message,
    ];
    for (const message of messages) {
      for (const secret of [badRootKey, ROOT_KEY, ROOT_KEY.slice(0, 12), shortToken, spacedToken, 's3cr3t-', 'hunter2']) {
        expect(message).not.toContain(secret);
      }
    }
  });
});

describe('loadConfig result', () => {
  const config = loadConfig({ KEYHOLD_ROOT_KEY: ROOT_KEY, KEYHOLD_BOOTSTRAP_TOKEN: TOKEN });

  it('is frozen', () => {
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('has a frozen database section', () => {
    expect(Object.isFrozen(config.database)).toBe(true);
  });

  it('has a frozen root key section', () => {
    expect(Object.isFrozen(config.rootKey)).toBe(true);
  });

  it('throws on an attempt to change it (ES modules run in strict mode)', () => {
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('does not show the root key when serialised', () => {
    expect(JSON.stringify(config)).not.toContain(ROOT_KEY);
    expect(JSON.stringify(config)).toContain('[REDACTED]');
  });
});
