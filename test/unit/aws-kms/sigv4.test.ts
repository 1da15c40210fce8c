import { createHash } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { AwsAuthenticationError } from '../../../src/aws-kms/aws-errors.js';
import type { SigningCredential } from '../../../src/aws-kms/signing-credential.js';
import { SigV4Verifier, type ReceivedRequest } from '../../../src/aws-kms/sigv4.js';
import type { Principal } from '../../../src/context/principal.js';
import { ManualClock } from '../../helpers/clock.js';

const ACCESS_KEY_ID = 'KHAKABCDEFGHIJKLMNOP';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const PRINCIPAL: Principal = Object.freeze({ id: 'k8s:payments:api', type: 'kubernetes', admin: false, attributes: Object.freeze({ accessKeyId: ACCESS_KEY_ID }) });
const NOW = Date.parse('2026-12-06T10:00:00Z');

function verifierWith(clock: ManualClock, credentials: Map<string, SigningCredential> = new Map([[ACCESS_KEY_ID, { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET, principal: PRINCIPAL }]])) {
  return new SigV4Verifier({ credentials: { signingCredential: (id) => credentials.get(id) }, region: 'us-east-1', service: 'kms', clock });
}

interface ClientRequest {
  host?: string;
  path?: string;
  body?: string;
  headers?: Record<string, string>;
  secret?: string;
  region?: string;
  at?: number;
  query?: Record<string, string>;
}

/** Signs a request as an AWS SDK does: the same library the JavaScript SDK signs with, used as a client. */
async function signed(request: ClientRequest = {}): Promise<ReceivedRequest> {
  const body = request.body ?? '{"KeyId":"alias/payments","KeySpec":"AES_256"}';
  const signer = new SignatureV4({
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: request.secret ?? SECRET },
    region: request.region ?? 'us-east-1',
    service: 'kms',
    sha256: Hash.bind(null, 'sha256'),
  });
  const out = await signer.sign(
    {
      method: 'POST',
      protocol: 'http:',
      hostname: 'keyhold.test',
      path: request.path ?? '/aws-kms/',
      query: request.query ?? {},
      headers: {
        host: request.host ?? 'keyhold.test:7780',
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'TrentService.GenerateDataKey',
        ...request.headers,
      },
      body,
    },
    { signingDate: new Date(request.at ?? NOW) },
  );
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(out.headers)) headers[name.toLowerCase()] = value;
  return { method: 'POST', path: request.path ?? '/aws-kms/', query: request.query ?? {}, headers, body: Buffer.from(body) };
}

async function refusal(verifier: SigV4Verifier, request: ReceivedRequest): Promise<{ type: string; reason: string; message: string }> {
  const error = await verifier.verify(request).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(AwsAuthenticationError);
  const refused = error as AwsAuthenticationError;
  return { type: refused.awsType, reason: refused.reason, message: refused.message };
}

describe('SigV4Verifier', () => {
  const clock = () => new ManualClock(NOW);

  it('accepts a request signed with the access key, and answers its principal', async () => {
    await expect(verifierWith(clock()).verify(await signed())).resolves.toBe(PRINCIPAL);
  });

  it('accepts a query string, and an x-amz-content-sha256 header only when it is the hash of the body', async () => {
    const request = await signed({ query: { a: 'b c', z: '1' }, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } });
    // The client signed its own claim about the body; the verifier hashes the body it got, so a claim that is not
    // the body's hash fails, and one that is passes.
    expect((await refusal(verifierWith(clock()), request)).type).toBe('InvalidSignatureException');
    const body = '{"KeyId":"alias/payments","KeySpec":"AES_256"}';
    const honest = await signed({ query: { a: 'b c' }, headers: { 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') } });
    await expect(verifierWith(clock()).verify(honest)).resolves.toBe(PRINCIPAL);
  });

  it('verifies a User-Agent the client chose to sign, though signers leave it out by default', async () => {
    const request = await signed({ headers: { 'user-agent': 'aws-cli/2.9.19' } });
    // The library leaves User-Agent out unless told; sign it as a client that lists it would.
    const withAgent = await (async () => {
      const signer = new SignatureV4({ credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET }, region: 'us-east-1', service: 'kms', sha256: Hash.bind(null, 'sha256') });
      const out = await signer.sign(
        { method: 'POST', protocol: 'http:', hostname: 'keyhold.test', path: '/aws-kms/', query: {}, headers: { ...request.headers, authorization: undefined as unknown as string }, body: request.body.toString() },
        { signingDate: new Date(NOW), signableHeaders: new Set(['user-agent']) },
      );
      return { ...request, headers: { ...request.headers, authorization: (out.headers as Record<string, string>).authorization } };
    })();
    expect(withAgent.headers.authorization).toContain('user-agent');
    await expect(verifierWith(clock()).verify(withAgent)).resolves.toBe(PRINCIPAL);
    const changedAgent = { ...withAgent, headers: { ...withAgent.headers, 'user-agent': 'other/1.0' } };
    expect((await refusal(verifierWith(clock()), changedAgent)).type).toBe('InvalidSignatureException');
  });

  it('refuses a changed body, a wrong secret and a rewritten Host as InvalidSignatureException', async () => {
    const verifier = verifierWith(clock());
    const changedBody = { ...(await signed()), body: Buffer.from('{"KeyId":"alias/other","KeySpec":"AES_256"}') };
    expect(await refusal(verifier, changedBody)).toMatchObject({ type: 'InvalidSignatureException', reason: 'invalid-signature' });
    expect(await refusal(verifier, await signed({ secret: `${SECRET.slice(0, -1)}X` }))).toMatchObject({ type: 'InvalidSignatureException', reason: 'invalid-signature' });
    const original = await signed();
    const rewritten = { ...original, headers: { ...original.headers, host: 'attacker.test:7780' } };
    expect(await refusal(verifier, rewritten)).toMatchObject({ type: 'InvalidSignatureException', reason: 'invalid-signature' });
    const otherPath = { ...original, path: '/other/' };
    expect((await refusal(verifier, otherPath)).type).toBe('InvalidSignatureException');
    const otherTarget = { ...original, headers: { ...original.headers, 'x-amz-target': 'TrentService.ScheduleKeyDeletion' } };
    expect((await refusal(verifier, otherTarget)).type).toBe('InvalidSignatureException');
  });

  it('refuses a request 20 minutes early or late, and a replay once the 5-minute window has passed', async () => {
    const verifier = verifierWith(clock());
    for (const at of [NOW - 20 * 60_000, NOW + 20 * 60_000]) {
      expect(await refusal(verifier, await signed({ at }))).toMatchObject({ type: 'InvalidSignatureException', reason: 'request-time-skewed' });
    }
    const replayClock = clock();
    const replayed = verifierWith(replayClock);
    const request = await signed();
    await expect(replayed.verify(request)).resolves.toBe(PRINCIPAL);
    replayClock.advance(4 * 60_000);
    await expect(replayed.verify(request)).resolves.toBe(PRINCIPAL);
    replayClock.advance(2 * 60_000);
    expect((await refusal(replayed, request)).reason).toBe('request-time-skewed');
  });

  it('refuses an unknown or revoked access key as UnrecognizedClientException, and a session token', async () => {
    expect(await refusal(verifierWith(clock(), new Map()), await signed())).toMatchObject({ type: 'UnrecognizedClientException', reason: 'unknown-access-key' });
    const withToken = await signed({ headers: { 'x-amz-security-token': 'FwoGZXIvYXdzE' } });
    expect(await refusal(verifierWith(clock()), withToken)).toMatchObject({ type: 'UnrecognizedClientException', reason: 'session-token' });
  });

  it('refuses a scope for another region, a missing or malformed Authorization, and an unsigned X-Amz-Target', async () => {
    const verifier = verifierWith(clock());
    expect(await refusal(verifier, await signed({ region: 'eu-west-1' }))).toMatchObject({ type: 'InvalidSignatureException', reason: 'wrong-scope' });
    const request = await signed();
    const { authorization = '', ...unsigned } = request.headers as Record<string, string>;
    expect((await refusal(verifier, { ...request, headers: unsigned })).type).toBe('MissingAuthenticationTokenException');
    for (const broken of ['Bearer x', 'AWS4-HMAC-SHA256 Credential=x', `${authorization}, Signature=00`, authorization.replace(/Signature=[0-9a-f]+/, 'Signature=zz')]) {
      expect((await refusal(verifier, { ...request, headers: { ...request.headers, authorization: broken } })).type).toBe('IncompleteSignatureException');
    }
    const withoutTarget = authorization.replace(';x-amz-target', '');
    expect(await refusal(verifier, { ...request, headers: { ...request.headers, authorization: withoutTarget } })).toMatchObject({
      type: 'IncompleteSignatureException',
      reason: 'unsigned-header',
    });
    const badDate = { ...request, headers: { ...request.headers, 'x-amz-date': '20261340T100000Z' } };
    expect((await refusal(verifier, badDate)).type).toBe('IncompleteSignatureException');
  });

  it('never echoes the secret or the expected signature', async () => {
    const { message } = await refusal(verifierWith(clock()), await signed({ secret: 'another-secret-entirely-0000000000000000' }));
    expect(message).not.toContain(SECRET);
    expect(message).not.toMatch(/[0-9a-f]{64}/);
  });
});
