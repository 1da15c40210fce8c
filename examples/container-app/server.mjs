// @ts-check
/**
 * container-app: a small HTTP service that keeps records encrypted with Keyhold envelope encryption.
 *
 *   PUT /records/:id   the request body is the plaintext; it is encrypted and stored (204)
 *   GET /records/:id   the stored record, decrypted (200, application/octet-stream)
 *   GET /healthz       liveness: the process answers
 *
 * Each record is encrypted under a data key of the Keyhold key named by APP_KEY_NAME, with the encryption context
 * `{app: 'container-app', record: <id>}`, and decrypted only with that same context expected. The record id in the
 * context is what stops a stored ciphertext from being moved to another record's place and read there.
 *
 * Ciphertexts go to PostgreSQL when DATABASE_URL is set (table APP_TABLE, created if missing), otherwise to files
 * under DATA_DIR. Plain ESM JavaScript, so the container runs it without a build step; `// @ts-check` and JSDoc
 * give editors the SDK's types.
 *
 * Start-up fails fast, exit status 1 and one JSON line on stderr saying what to check, when the configuration is
 * invalid, when Keyhold is not ready or refuses this workload's credential, or when the workload may not use its
 * key. This file is the only one that reads process.env.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { clientOptionsFromEnv, createClient, DecryptionError, KeyholdSdkError } from '@keyhold/sdk';

/** @typedef {import('@keyhold/sdk').KeyholdClient} KeyholdClient */
/** @typedef {import('@keyhold/sdk').EncryptionContext} EncryptionContext */
/** @typedef {import('node:http').IncomingMessage} IncomingMessage */
/** @typedef {import('node:http').ServerResponse} ServerResponse */

/**
 * @typedef {object} AppConfig
 * @property {string} keyName       APP_KEY_NAME: the Keyhold key that protects the records.
 * @property {string} host          HOST: the address to listen on (default 127.0.0.1; the image sets 0.0.0.0).
 * @property {number} port          PORT: the port to listen on (default 8080; 0 picks a free one).
 * @property {string | undefined} databaseUrl  DATABASE_URL: PostgreSQL; when set, records go there.
 * @property {string} table         APP_TABLE: the PostgreSQL table (default container_app_records).
 * @property {string | undefined} dataDir      DATA_DIR: the folder of record files when DATABASE_URL is not set.
 */

/**
 * @typedef {object} RecordStore
 * @property {string} kind
 * @property {(id: string, ciphertext: Uint8Array) => Promise<void>} put
 * @property {(id: string) => Promise<Buffer | undefined>} get
 * @property {() => Promise<void>} close
 */

const APP = 'container-app';
/**
 * Record ids: safe as file names and in URLs. The first character is never a dot, so `.` and `..` are not ids and
 * the start-up check's context (below) can never be a record's.
 */
const RECORD_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TABLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const MAX_BODY_BYTES = 1024 * 1024;
const SHUTDOWN_GRACE_MS = 10_000;

// ---------------------------------------------------------------------------------------------------------------
// Configuration

/**
 * Reads and checks the app's own variables, reporting every problem at once. The KEYHOLD_* variables are the SDK's
 * (clientOptionsFromEnv).
 *
 * @param {Readonly<Record<string, string | undefined>>} env
 * @returns {AppConfig}
 */
export function loadConfig(env) {
  /** @type {string[]} */
  const problems = [];
  /** @param {string} name */
  const value = (name) => (env[name] === undefined || env[name] === '' ? undefined : env[name]);

  const keyName = value('APP_KEY_NAME');
  if (keyName === undefined) problems.push('APP_KEY_NAME is not set (the Keyhold key that protects the records)');
  else if (!KEY_NAME.test(keyName)) problems.push('APP_KEY_NAME is not a valid key name');

  const portText = value('PORT') ?? '8080';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 0 && port <= 65535)) problems.push('PORT must be a whole number from 0 to 65535');

  const table = value('APP_TABLE') ?? 'container_app_records';
  if (!TABLE_NAME.test(table)) problems.push('APP_TABLE must match ^[a-z_][a-z0-9_]{0,62}$');

  const databaseUrl = value('DATABASE_URL');
  const dataDir = value('DATA_DIR');
  if (databaseUrl === undefined && dataDir === undefined) {
    problems.push('set DATABASE_URL (records in PostgreSQL) or DATA_DIR (records in files)');
  }
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    // The value is not quoted: it may hold a password.
    problems.push('DATABASE_URL must be a postgres:// URL');
  }

  if (problems.length > 0) throw new StartupError(`invalid configuration: ${problems.join('; ')}`, 'APP_CONFIGURATION');
  return Object.freeze({
    keyName: /** @type {string} */ (keyName),
    host: value('HOST') ?? '127.0.0.1',
    port,
    databaseUrl,
    table,
    dataDir,
  });
}

/** A start-up failure: its message says what to check. */
class StartupError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   */
  constructor(message, code) {
    super(message);
    this.name = 'StartupError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Logging: one JSON object per line. Never a plaintext, a ciphertext, a token or a database URL.

/**
 * @param {'info' | 'warn' | 'error' | 'fatal'} level
 * @param {string} msg
 * @param {Record<string, unknown>} [fields]
 */
function log(level, msg, fields = {}) {
  const line = `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`;
  (level === 'info' ? process.stdout : process.stderr).write(line);
}

// ---------------------------------------------------------------------------------------------------------------
// Encryption

/**
 * The encryption context of a record. It is authenticated, not secret: it is stored in clear in the ciphertext's
 * header, so it holds the record's id and never its content.
 *
 * @param {string} id
 * @returns {EncryptionContext}
 */
function recordContext(id) {
  return { app: APP, record: id };
}

/** The context of the start-up check: a record id can never start with a dot. */
const STARTUP_CHECK_CONTEXT = Object.freeze({ app: APP, record: '.startup-check' });

/** What to look at, per SDK error code, when start-up fails. */
const STARTUP_HINTS = /** @type {Record<string, string>} */ ({
  KH_SDK_CONFIGURATION: 'check the KEYHOLD_* variables',
  KH_SDK_CREDENTIALS: 'the credential file could not be read: is the projected token volume mounted at KEYHOLD_TOKEN_PATH '
    + '(default /var/run/secrets/tokens/keyhold)?',
  KH_SDK_UNAUTHENTICATED: 'Keyhold refused the credential: check the token audience (keyhold) and that Keyhold trusts this '
    + "cluster's issuer (KEYHOLD_AUTH_CONFIG), or that the API token is live",
  KH_SDK_ACCESS_DENIED: 'Keyhold denied the key: apply k8s/keyhold-policy.json (PUT /v1/policies/container-app) for this '
    + 'service account and APP_KEY_NAME',
  KH_SDK_KEY_NOT_FOUND: 'the key named by APP_KEY_NAME does not exist: create it (POST /v1/keys)',
  KH_SDK_KEY_STATE: 'the key named by APP_KEY_NAME is disabled, pending deletion or destroyed',
  KH_SDK_SERVICE_UNAVAILABLE: 'Keyhold did not answer at KEYHOLD_URL',
  KH_SDK_DEADLINE_EXCEEDED: 'Keyhold did not answer at KEYHOLD_URL in time (KEYHOLD_TIMEOUT_MS)',
});

/**
 * Connects to Keyhold and proves the workload can do its job before it takes traffic: the service is ready and
 * accepts the credential (ready()), and the policy lets this workload create and unwrap data keys of its key under
 * its context (a probe encrypted and decrypted: two calls to Keyhold). A pod that cannot serve a single request then
 * crash-loops with a message, instead of passing its probes and failing every request.
 *
 * @param {AppConfig} config
 * @param {Readonly<Record<string, string | undefined>>} env  the KEYHOLD_* variables
 * @returns {Promise<{ client: KeyholdClient, principal: string }>}
 */
async function connectKeyhold(config, env) {
  const client = createClient(clientOptionsFromEnv(env));
  try {
    const principal = await client.ready();
    const probe = await client.encrypt(config.keyName, 'startup check', { context: STARTUP_CHECK_CONTEXT });
    (await client.decrypt(probe, { expectedContext: STARTUP_CHECK_CONTEXT })).fill(0);
    // The probe's data keys are of no further use: zero them now rather than when the cache lets them go.
    client.cache.purge(config.keyName);
    return { client, principal: principal.id };
  } catch (error) {
    await client.close();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Storage

/**
 * Records as files `DATA_DIR/<id>.enc`, mode 0600, written to a temporary file and renamed into place so a reader
 * never sees half a record.
 *
 * @param {string} dir
 * @returns {Promise<RecordStore>}
 */
async function fileStore(dir) {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  /** @param {string} id */
  const pathOf = (id) => join(dir, `${id}.enc`);
  return {
    kind: 'files',
    async put(id, ciphertext) {
      // A leading dot and a random suffix: never a record's name, never another writer's.
      const temporary = join(dir, `.${id}.${randomUUID()}.tmp`);
      const handle = await open(temporary, 'wx', 0o600);
      try {
        await handle.writeFile(ciphertext);
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        await rename(temporary, pathOf(id));
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
    },
    async get(id) {
      try {
        return await readFile(pathOf(id));
      } catch (error) {
        if (/** @type {NodeJS.ErrnoException} */ (error).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    async close() {},
  };
}

/**
 * Records in a PostgreSQL table `(id text primary key, ciphertext bytea, updated_at timestamptz)`, created if
 * missing. `pg` is imported only here, so the file mode needs no database driver.
 *
 * @param {string} url
 * @param {string} table  checked against TABLE_NAME, so it is safe to quote into SQL
 * @returns {Promise<RecordStore>}
 */
async function postgresStore(url, table) {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 5, connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
  // An idle connection that the server drops emits 'error' on the pool; without a listener it would end the process.
  pool.on('error', (error) => log('warn', 'idle PostgreSQL connection failed', { error: error.message }));
  const quoted = `"${table}"`;
  const connection = await pool.connect();
  try {
    // Replicas starting together would race CREATE TABLE IF NOT EXISTS (a unique violation in pg_type); a
    // transaction-scoped advisory lock makes them take turns.
    await connection.query('BEGIN');
    await connection.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`keyhold-container-app:${table}`]);
    await connection.query(
      `CREATE TABLE IF NOT EXISTS ${quoted} (id text PRIMARY KEY, ciphertext bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
    );
    await connection.query('COMMIT');
  } catch (error) {
    await connection.query('ROLLBACK').catch(() => undefined);
    await pool.end();
    throw error;
  } finally {
    connection.release();
  }
  return {
    kind: 'postgres',
    async put(id, ciphertext) {
      await pool.query(
        `INSERT INTO ${quoted} (id, ciphertext) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = now()`,
        [id, Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength)],
      );
    },
    async get(id) {
      const result = await pool.query(`SELECT ciphertext FROM ${quoted} WHERE id = $1`, [id]);
      return result.rows[0]?.ciphertext;
    },
    async close() {
      await pool.end();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

class BodyTooLarge extends Error {}

/**
 * The request body, up to MAX_BODY_BYTES.
 *
 * @param {IncomingMessage} request
 * @returns {Promise<Buffer>}
 */
function readBody(request) {
  return new Promise((resolve, reject) => {
    if (Number(request.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
      reject(new BodyTooLarge());
      return;
    }
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    request.on('data', (/** @type {Buffer} */ chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        for (const part of chunks) part.fill(0);
        chunks.length = 0;
        reject(new BodyTooLarge());
        request.pause();
      } else {
        chunks.push(chunk);
      }
    });
    request.on('error', reject);
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      for (const part of chunks) part.fill(0);
      resolve(body);
    });
  });
}

/**
 * An RFC 9457 problem document. Its title is always one of this file's fixed texts, never an error's message.
 *
 * @param {ServerResponse} response
 * @param {number} status
 * @param {string} code
 * @param {string} title
 * @param {string} requestId
 * @param {Record<string, string>} [headers]
 */
function sendProblem(response, status, code, title, requestId, headers = {}) {
  const body = JSON.stringify({ type: 'about:blank', title, status, code, requestId });
  response.writeHead(status, { 'content-type': 'application/problem+json', 'x-request-id': requestId, ...headers });
  response.end(body);
}

/**
 * What a failed request answers. A record that does not decrypt (altered, truncated, moved from another record)
 * is the server's own data gone bad: 500, with one fixed text whatever the cause, as the SDK gives one error for
 * all of them. Keyhold being unavailable is worth a retry: 503.
 *
 * @param {unknown} error
 * @returns {{ status: number, code: string, title: string, retryAfter?: string }}
 */
function failureOf(error) {
  if (error instanceof DecryptionError) return { status: 500, code: 'RECORD_UNREADABLE', title: 'The stored record could not be decrypted' };
  if (error instanceof KeyholdSdkError && (error.code === 'KH_SDK_SERVICE_UNAVAILABLE' || error.code === 'KH_SDK_DEADLINE_EXCEEDED')) {
    return { status: 503, code: 'KEYHOLD_UNAVAILABLE', title: 'The key service is unavailable', retryAfter: '1' };
  }
  return { status: 500, code: 'INTERNAL', title: 'Internal error' };
}

/**
 * @param {{ client: KeyholdClient, store: RecordStore, keyName: string }} deps
 * @returns {(request: IncomingMessage, response: ServerResponse) => void}
 */
function createHandler({ client, store, keyName }) {
  return (request, response) => {
    const requestId = randomUUID();
    handle(request, response, requestId).catch((error) => {
      const failure = failureOf(error);
      // SDK messages hold no plaintext, key or credential; the stack of an SDK error adds nothing for an operator.
      log('error', 'request failed', {
        requestId,
        method: request.method,
        status: failure.status,
        code: error instanceof KeyholdSdkError ? error.code : undefined,
        serviceRequestId: error?.requestId,
        error: error instanceof KeyholdSdkError ? error.message : String(error?.stack ?? error),
      });
      if (response.headersSent) {
        response.destroy();
        return;
      }
      sendProblem(response, failure.status, failure.code, failure.title, requestId,
        failure.retryAfter === undefined ? {} : { 'retry-after': failure.retryAfter });
    });
  };

  /**
   * @param {IncomingMessage} request
   * @param {ServerResponse} response
   * @param {string} requestId
   */
  async function handle(request, response, requestId) {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (path === '/healthz') {
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        sendProblem(response, 405, 'METHOD_NOT_ALLOWED', 'Method not allowed', requestId, { allow: 'GET, HEAD' });
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(request.method === 'HEAD' ? undefined : '{"status":"ok"}');
      return;
    }
    const match = /^\/records\/([^/]+)$/.exec(path);
    if (match === null) {
      sendProblem(response, 404, 'NOT_FOUND', 'No such route', requestId);
      return;
    }
    let id;
    try {
      id = decodeURIComponent(/** @type {string} */ (match[1]));
    } catch {
      id = '';
    }
    if (!RECORD_ID.test(id)) {
      sendProblem(response, 400, 'INVALID_RECORD_ID', 'A record id matches ^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$', requestId);
      return;
    }

    if (request.method === 'PUT') {
      let plaintext;
      try {
        plaintext = await readBody(request);
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) throw error;
        sendProblem(response, 413, 'PAYLOAD_TOO_LARGE', `A record holds at most ${MAX_BODY_BYTES} bytes`, requestId, { connection: 'close' });
        return;
      }
      let ciphertext;
      try {
        ciphertext = await client.encrypt(keyName, plaintext, { context: recordContext(id) });
      } finally {
        plaintext.fill(0);
      }
      await store.put(id, ciphertext);
      response.writeHead(204, { 'x-request-id': requestId });
      response.end();
      return;
    }

    if (request.method === 'GET') {
      const stored = await store.get(id);
      if (stored === undefined) {
        sendProblem(response, 404, 'RECORD_NOT_FOUND', 'No such record', requestId);
        return;
      }
      // The SDK returns the plaintext only once every segment has authenticated, and only for this record's
      // context: a ciphertext copied from another record fails here.
      const plaintext = await client.decrypt(stored, { expectedContext: recordContext(id) });
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(plaintext.length),
        'cache-control': 'no-store',
        'x-request-id': requestId,
      });
      // Zeroed once the socket has taken it.
      response.end(plaintext, () => plaintext.fill(0));
      return;
    }

    sendProblem(response, 405, 'METHOD_NOT_ALLOWED', 'Method not allowed', requestId, { allow: 'GET, PUT' });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Start-up and shutdown

/**
 * Starts the service; rejects when it cannot start, after releasing what it had opened.
 *
 * @returns {Promise<void>}
 */
async function main() {
  const config = loadConfig(process.env);
  const { client, principal } = await connectKeyhold(config, process.env);
  /** @type {RecordStore | undefined} */
  let store;
  const server = createServer();
  try {
    store = config.databaseUrl !== undefined ? await postgresStore(config.databaseUrl, config.table) : await fileStore(/** @type {string} */ (config.dataDir));
    server.on('request', createHandler({ client, store, keyName: config.keyName }));
    server.requestTimeout = 30_000;
    server.headersTimeout = 10_000;
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve(undefined));
    });
  } catch (error) {
    await client.close();
    await store?.close();
    throw error;
  }
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  log('info', 'listening', { host: address.address, port: address.port, principal, key: config.keyName, store: store.kind });

  const openStore = store;
  let stopping = false;
  /** @param {NodeJS.Signals} signal */
  const shutdown = (signal) => {
    if (stopping) return;
    stopping = true;
    log('info', 'shutting down', { signal });
    // Kubernetes has already stopped routing to the pod; let requests in flight finish, then release everything.
    setTimeout(() => {
      log('error', 'shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
    server.close(async () => {
      await client.close();
      await openStore.close();
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/**
 * The network error code or HTTP status behind an SDK error, if any; never a message, which could quote a peer.
 *
 * @param {unknown} error
 * @returns {string | undefined}
 */
function causeOf(error) {
  const cause = /** @type {{ cause?: { code?: unknown, status?: unknown } } | undefined} */ (error)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.status === 'number') return `HTTP ${cause.status}`;
  return undefined;
}

try {
  await main();
} catch (error) {
  const code = /** @type {{ code?: unknown } | undefined} */ (error)?.code;
  // SDK and start-up messages name variables and paths, never values; anything else is shown whole.
  const known = error instanceof KeyholdSdkError || error instanceof StartupError;
  log('fatal', 'start-up failed', {
    code: typeof code === 'string' ? code : undefined,
    error: known ? /** @type {Error} */ (error).message : String(/** @type {Error} */ (error)?.stack ?? error),
    // What the last attempt ran into (ECONNREFUSED, ENOTFOUND, an HTTP status…), when the SDK kept it.
    cause: causeOf(error),
    hint: typeof code === 'string' ? STARTUP_HINTS[code] : undefined,
  });
  process.exit(1);
}
