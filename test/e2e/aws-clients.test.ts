import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';

/**
 * The AWS CLI and boto3 from Debian's packages (`awscli`, `python3-boto3`; .ci/run installs them), against a real
 * `keyhold server` process that serves the endpoint on a port of its own. Skipped, with a message, where they are
 * not installed.
 */
const AWS_CLI = '/usr/bin/aws';
const SYSTEM_PYTHON = '/usr/bin/python3';
const SERVER = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));
const ADMIN = `kh_e2e_admin_${'y'.repeat(32)}`;
const run = promisify(execFile);

const hasAwsCli = existsSync(AWS_CLI);
const hasBoto3 = existsSync(SYSTEM_PYTHON) && (await run(SYSTEM_PYTHON, ['-c', 'import boto3']).then(() => true, () => false));
if (!hasAwsCli) console.warn(`skipping the AWS CLI tests: ${AWS_CLI} is not installed (apt-get install awscli)`);
if (!hasBoto3) console.warn(`skipping the boto3 tests: ${SYSTEM_PYTHON} cannot import boto3 (apt-get install python3-boto3)`);

describe.skipIf(!hasAwsCli && !hasBoto3)('AWS clients nobody here wrote, against a keyhold server process', () => {
  let child: ChildProcess;
  let dir: string;
  let api: string;
  let endpoint: string;
  let clientEnv: Record<string, string>;
  let output = '';

  async function call(method: string, path: string, body?: unknown): Promise<any> {
    const response = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    expect(response.status, text).toBeLessThan(300);
    return text === '' ? undefined : JSON.parse(text);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keyhold-aws-e2e-'));
    child = spawn(process.execPath, [SERVER, 'server'], {
      env: {
        PATH: process.env.PATH ?? '',
        KEYHOLD_PORT: '0',
        KEYHOLD_AWS_KMS_PORT: '0',
        KEYHOLD_DATA_DIR: dir,
        KEYHOLD_BOOTSTRAP_TOKEN: ADMIN,
        KEYHOLD_LOG_LEVEL: 'warn',
        KEYHOLD_WORKERS: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    api = await waitFor(() => /Keyhold listening on (http:\/\/\S+)/.exec(output)?.[1], 20_000);
    endpoint = await waitFor(() => /AWS KMS endpoint listening on (http:\/\/\S+)/.exec(output)?.[1], 5_000);
    await call('POST', '/v1/keys', { name: 'reports' });
    await call('POST', '/v1/keys', { name: 'reports-frozen' });
    await call('PUT', '/v1/policies/reports', {
      statements: [{ sid: 'reports', effect: 'allow', principals: ['k8s:analytics:reports'], actions: ['*'], keys: ['reports', 'reports-*'] }],
    });
    const credential = await call('POST', '/v1/aws-credentials', { name: 'reports', principal: 'k8s:analytics:reports' });
    await call('POST', '/v1/keys/reports-frozen/disable');
    // Nothing of the machine's own AWS set-up may leak in: no config file, no profile, no instance metadata.
    clientEnv = {
      PATH: '/usr/bin:/bin',
      HOME: dir,
      AWS_ACCESS_KEY_ID: credential.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credential.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_PAGER: '',
    };
  }, 60_000);

  afterAll(async () => {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  async function aws(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return run(AWS_CLI, ['kms', ...args, '--endpoint-url', endpoint, '--output', 'json'], { env: clientEnv }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );
  }

  it.skipIf(!hasAwsCli)('aws kms generate-data-key, encrypt, decrypt and list-keys work; a disabled key is DisabledException', async () => {
    const dataKey = await aws('generate-data-key', '--key-id', 'alias/reports', '--key-spec', 'AES_256', '--encryption-context', 'job=nightly');
    expect(dataKey.code, dataKey.stderr).toBe(0);
    const issued = JSON.parse(dataKey.stdout);
    expect(Buffer.from(issued.Plaintext, 'base64')).toHaveLength(32);
    expect(issued.KeyId).toMatch(/^arn:aws:kms:us-east-1:000000000000:key\/[0-9a-f-]{36}$/);

    const secretFile = join(dir, 'secret.txt');
    writeFileSync(secretFile, 'quarterly numbers');
    const encrypted = await aws('encrypt', '--key-id', 'alias/reports', '--plaintext', `fileb://${secretFile}`);
    expect(encrypted.code, encrypted.stderr).toBe(0);
    const blobFile = join(dir, 'secret.bin');
    writeFileSync(blobFile, Buffer.from(JSON.parse(encrypted.stdout).CiphertextBlob, 'base64'));
    const decrypted = await aws('decrypt', '--ciphertext-blob', `fileb://${blobFile}`);
    expect(decrypted.code, decrypted.stderr).toBe(0);
    expect(Buffer.from(JSON.parse(decrypted.stdout).Plaintext, 'base64').toString()).toBe('quarterly numbers');

    const listed = await aws('list-keys');
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).Keys).toHaveLength(2);

    const disabled = await aws('encrypt', '--key-id', 'alias/reports-frozen', '--plaintext', `fileb://${secretFile}`);
    expect(disabled.code).not.toBe(0);
    expect(disabled.stderr).toContain('DisabledException');
  }, 60_000);

  it('answers anything but the endpoint on its own port in AWS shape, not as a Keyhold problem', async () => {
    const response = await fetch(`${endpoint}v1/keys`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ __type: 'UnknownOperationException' });
  });

  it.skipIf(!hasBoto3)('boto3 generates, encrypts, decrypts and lists, and raises DisabledException', async () => {
    const script = readFileSync(fileURLToPath(new URL('./aws-clients.boto3.py', import.meta.url)), 'utf8');
    const { stdout } = await run(SYSTEM_PYTHON, ['-c', script, endpoint], { env: clientEnv });
    expect(JSON.parse(stdout)).toEqual({
      data_key_bytes: 32,
      round_trip: 'quarterly numbers',
      keys_listed: 2,
      disabled: 'DisabledException',
      denied: 'AccessDeniedException',
    });
  }, 60_000);
});
