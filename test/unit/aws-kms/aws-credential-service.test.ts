import { describe, expect, it } from 'vitest';
import { AwsCredentialService, type IssuedAwsCredential } from '../../../src/aws-kms/aws-credential-service.js';
import type { SigningCredential } from '../../../src/aws-kms/signing-credential.js';
import { callerOf } from '../../../src/context/caller.js';
import type { Principal } from '../../../src/context/principal.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy } from '../../../src/policy/policy.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { awsCredentialWrapAad } from '../../../src/root-keys/root-keyring.js';
import { ManualClock } from '../../helpers/clock.js';
import { InMemoryAwsCredentialRepository } from '../../helpers/fakes/in-memory-aws-credential-repository.js';

const ADMIN: Principal = Object.freeze({
  id: 'token:root',
  type: 'token',
  admin: true,
  attributes: Object.freeze({ tokenId: '00000000-0000-4000-8000-000000000001', tokenName: 'root' }),
});
const POD: Principal = Object.freeze({
  id: 'k8s:shop:api',
  type: 'kubernetes',
  admin: false,
  attributes: Object.freeze({ namespace: 'shop', serviceAccount: 'api', podName: 'api-7d9f', podUid: '0b6f0d7c-8d53-4f43-a4a4-9d1f3c1a2b3c', issuer: 'https://kubernetes.default.svc' }),
});
/** A workload allowed both AWS credential actions; nothing else. */
const WRITER: Principal = Object.freeze({ id: 'token:ops', type: 'token', admin: false, attributes: Object.freeze({ tokenName: 'ops' }) });

const GRANTS = new PolicySet([
  compilePolicy('aws', {
    statements: [{ effect: 'allow', principals: ['k8s:shop:api', 'token:ops'], actions: ['aws-credentials:read', 'aws-credentials:write'], keys: ['*'] }],
  }),
]);

function world(cacheTtlMs = 5000) {
  const clock = new ManualClock();
  const repository = new InMemoryAwsCredentialRepository();
  const rootKey = new LocalRootKey(SecretBytes.random(32));
  const service = new AwsCredentialService({ repository, rootKey, authorizer: new PolicyAuthorizer(() => GRANTS), clock, cacheTtlMs });
  return { clock, repository, rootKey, service };
}

/** Awaits `work` and expects it to fail with the Keyhold error `code`. */
async function expectKeyholdError(work: Promise<unknown>, code: string): Promise<void> {
  await expect(work).rejects.toMatchObject({ code });
}

async function lookup(service: AwsCredentialService, accessKeyId: string): Promise<SigningCredential | undefined> {
  return service.signingCredential(accessKeyId);
}

describe('AwsCredentialService.create', () => {
  it('issues a KHAK access key id of 20 characters and a 40-character base64 secret of 30 bytes', async () => {
    const { service } = world();
    const issued = await service.create(callerOf(ADMIN), { name: 'ci' });
    expect(issued.accessKeyId).toMatch(/^KHAK[A-Z2-7]{16}$/);
    expect(issued.secretAccessKey).toMatch(/^[A-Za-z0-9+/]{40}$/);
    expect(Buffer.from(issued.secretAccessKey, 'base64')).toHaveLength(30);
  });

  it('issues a different id and secret every time', async () => {
    const { service } = world();
    const a = await service.create(callerOf(ADMIN), { name: 'a' });
    const b = await service.create(callerOf(ADMIN), { name: 'b' });
    expect(a.accessKeyId).not.toBe(b.accessKeyId);
    expect(a.secretAccessKey).not.toBe(b.secretAccessKey);
  });

  it('stores the secret only wrapped under the root key, with the root key id beside it', async () => {
    const { service, repository, rootKey } = world();
    const issued = await service.create(callerOf(ADMIN), { name: 'ci' });
    const row = repository.row(issued.accessKeyId)!;
    expect(row.rootKeyId).toBe(rootKey.id);
    expect(row.wrappedSecret.includes(Buffer.from(issued.secretAccessKey, 'base64'))).toBe(false);
    expect(row.wrappedSecret.toString('latin1')).not.toContain(issued.secretAccessKey);
    const secret = await rootKey.unwrap(row.wrappedSecret, awsCredentialWrapAad(issued.accessKeyId));
    expect(secret.toString('base64')).toBe(issued.secretAccessKey);
  });

  it('binds the key to the caller without a principal, less the per-pod attributes', async () => {
    const { service } = world();
    const issued = await service.create(callerOf(POD), { name: 'mine' });
    expect(issued.principal).toEqual({
      id: 'k8s:shop:api',
      type: 'kubernetes',
      attributes: { namespace: 'shop', serviceAccount: 'api', issuer: 'https://kubernetes.default.svc' },
    });
    expect(issued.createdBy).toBe('k8s:shop:api');
  });

  it('does not carry over the access key a SigV4 caller signed with: the new key names itself', async () => {
    const { service } = world();
    const signed: Principal = Object.freeze({ ...POD, attributes: Object.freeze({ ...POD.attributes, accessKeyId: 'KHAKAAAAAAAAAAAAAAAA' }) });
    const issued = await service.create(callerOf(signed), { name: 'next' });
    expect(issued.principal.attributes).not.toHaveProperty('accessKeyId');
    expect((await lookup(service, issued.accessKeyId))!.principal.attributes.accessKeyId).toBe(issued.accessKeyId);
  });

  it('lets a workload name its own principal, which binds it as the caller', async () => {
    const { service } = world();
    const issued = await service.create(callerOf(POD), { name: 'mine', principal: 'k8s:shop:api' });
    expect(issued.principal.attributes).toEqual({ namespace: 'shop', serviceAccount: 'api', issuer: 'https://kubernetes.default.svc' });
  });

  it('refuses a non-admin binding a key to another principal with 403: that is impersonation', async () => {
    const { service, repository } = world();
    await expectKeyholdError(service.create(callerOf(WRITER), { name: 'x', principal: 'k8s:shop:api' }), 'KH_ERR_FORBIDDEN');
    expect(repository.reads.list).toBe(0);
    expect(await repository.list({ limit: 10 })).toEqual([]);
  });

  it('refuses a caller without aws-credentials:write with 403, before anything else', async () => {
    const { service } = world();
    const stranger: Principal = Object.freeze({ id: 'token:nobody', type: 'token', admin: false, attributes: Object.freeze({}) });
    await expectKeyholdError(service.create(callerOf(stranger), { name: 'x' }), 'KH_ERR_FORBIDDEN');
  });

  it('names the operation aws-credentials:create in the audit trail, refused or not', async () => {
    const { service } = world();
    const caller = callerOf(WRITER);
    await expect(service.create(caller, { name: 'x', principal: 'k8s:a:b' })).rejects.toThrow();
    expect(caller.trail.recordedAction).toBe('aws-credentials:create');
  });

  it.each([
    ['k8s:payments:api', 'kubernetes', { namespace: 'payments', serviceAccount: 'api' }],
    ['k8s:payments:build.runner', 'kubernetes', { namespace: 'payments', serviceAccount: 'build.runner' }],
    ['spiffe://prod.example/ns/payments/sa/api', 'spiffe', { trustDomain: 'prod.example', path: '/ns/payments/sa/api', namespace: 'payments', serviceAccount: 'api' }],
    ['spiffe://prod.example/billing/worker', 'spiffe', { trustDomain: 'prod.example', path: '/billing/worker' }],
    // Not Kubernetes names: no namespace, exactly as the SVID authenticator decides.
    ['spiffe://prod.example/ns/Payments.prod/sa/api', 'spiffe', { trustDomain: 'prod.example', path: '/ns/Payments.prod/sa/api' }],
    ['token:ci-runner', 'token', { tokenName: 'ci-runner' }],
  ])('an admin binds %s as type %s with the attributes its id tells', async (id, type, attributes) => {
    const { service } = world();
    const issued = await service.create(callerOf(ADMIN), { name: 'bound', principal: id });
    expect(issued.principal).toEqual({ id, type, attributes });
  });

  it.each(['payments', 'k8s:payments', 'k8s:Payments:api', 'k8s:a:b:c', 'k8s:a.b:api', 'spiffe://Prod/x', 'spiffe://prod/a//b', 'token:', 'token:-x', 'user:alice', ''])(
    'refuses the principal %j with 400 KH_ERR_VALIDATION',
    async (id) => {
      const { service } = world();
      await expectKeyholdError(service.create(callerOf(ADMIN), { name: 'bad', principal: id }), 'KH_ERR_VALIDATION');
    },
  );

  it('refuses a second live key of one name with 409, and issues it again once the first is revoked', async () => {
    const { service } = world();
    const first = await service.create(callerOf(ADMIN), { name: 'ci' });
    await expectKeyholdError(service.create(callerOf(ADMIN), { name: 'ci' }), 'KH_ERR_AWS_CREDENTIAL_EXISTS');
    await service.revoke(callerOf(ADMIN), first.accessKeyId);
    expect((await service.create(callerOf(ADMIN), { name: 'ci' })).accessKeyId).not.toBe(first.accessKeyId);
  });

  it('sets expiresAt to now plus ttlSeconds', async () => {
    const { service, clock } = world();
    const issued = await service.create(callerOf(ADMIN), { name: 'short', ttlSeconds: 600 });
    expect(issued.expiresAt).toEqual(new Date(clock.now().getTime() + 600_000));
  });
});

describe('AwsCredentialService.signingCredential', () => {
  async function issued(principal = ADMIN, input: { name?: string; principal?: string; ttlSeconds?: number } = {}) {
    const w = world();
    const credential: IssuedAwsCredential = await w.service.create(callerOf(principal), { name: 'k', ...input });
    return { ...w, credential };
  }

  it('gives the secret and the bound principal, with accessKeyId added, frozen', async () => {
    const { service, credential } = await issued(POD);
    const found = (await lookup(service, credential.accessKeyId))!;
    expect(found).toEqual({
      accessKeyId: credential.accessKeyId,
      secretAccessKey: credential.secretAccessKey,
      principal: {
        id: 'k8s:shop:api',
        type: 'kubernetes',
        admin: false,
        attributes: { namespace: 'shop', serviceAccount: 'api', issuer: 'https://kubernetes.default.svc', accessKeyId: credential.accessKeyId },
      },
    });
    expect(Object.isFrozen(found)).toBe(true);
    expect(Object.isFrozen(found.principal)).toBe(true);
    expect(Object.isFrozen(found.principal.attributes)).toBe(true);
  });

  it('is never an admin, even bound to an admin\'s own principal', async () => {
    const { service, credential } = await issued(ADMIN);
    const found = (await lookup(service, credential.accessKeyId))!;
    expect(found.principal.id).toBe('token:root');
    expect(found.principal.admin).toBe(false);
  });

  it('answers a second lookup from memory, synchronously, without another read', async () => {
    const { service, repository, credential } = await issued();
    await lookup(service, credential.accessKeyId);
    const again = service.signingCredential(credential.accessKeyId);
    expect(again).not.toBeInstanceOf(Promise);
    expect((again as SigningCredential).accessKeyId).toBe(credential.accessKeyId);
    expect(repository.reads.find).toBe(1);
    expect(service.cacheStats).toEqual({ hits: 1, misses: 1 });
  });

  it('reads the store again once the cache TTL has passed', async () => {
    const { service, repository, credential, clock } = await issued();
    await lookup(service, credential.accessKeyId);
    clock.advance(5000);
    expect(await lookup(service, credential.accessKeyId)).toBeDefined();
    expect(repository.reads.find).toBe(2);
  });

  it('concurrent lookups of one key read the store once', async () => {
    const { service, repository, credential } = await issued();
    const found = await Promise.all([lookup(service, credential.accessKeyId), lookup(service, credential.accessKeyId)]);
    expect(found.map((c) => c?.accessKeyId)).toEqual([credential.accessKeyId, credential.accessKeyId]);
    expect(repository.reads.find).toBe(1);
  });

  it.each(['', 'AKIAIOSFODNN7EXAMPLE', 'KHAK', 'khak234567abcdefghij', 'KHAKAAAAAAAAAAAAAAA1', 'KHAKAAAAAAAAAAAAAAAAA', ' KHAKAAAAAAAAAAAAAAAA'])(
    'answers undefined for the malformed id %j without a query',
    (id) => {
      const { service, repository } = world();
      expect(service.signingCredential(id)).toBeUndefined();
      expect(repository.reads.find).toBe(0);
    },
  );

  it('answers undefined for an unknown id of the right shape', async () => {
    const { service } = world();
    expect(await lookup(service, 'KHAKAAAAAAAAAAAAAAAA')).toBeUndefined();
  });

  it('an expired key is refused, even from the cache', async () => {
    const w = world(3_600_000);
    const credential = await w.service.create(callerOf(ADMIN), { name: 'short', ttlSeconds: 60 });
    expect(await lookup(w.service, credential.accessKeyId)).toBeDefined();
    w.clock.advance(59_999);
    expect(w.service.signingCredential(credential.accessKeyId)).toBeDefined();
    w.clock.advance(1);
    expect(w.service.signingCredential(credential.accessKeyId)).toBeUndefined();
    expect(w.repository.reads.find).toBe(1);
  });

  it('a revoked key stops signing at once on this replica, though it was cached', async () => {
    const { service, credential } = await issued();
    await lookup(service, credential.accessKeyId);
    await service.revoke(callerOf(ADMIN), credential.accessKeyId);
    expect(await lookup(service, credential.accessKeyId)).toBeUndefined();
  });

  it('forget drops a cached key, so a revocation on another replica takes effect at the next lookup', async () => {
    const { service, repository, credential, clock } = await issued();
    await lookup(service, credential.accessKeyId);
    await repository.revoke(credential.accessKeyId, clock.now()); // another replica's write
    expect(await lookup(service, credential.accessKeyId)).toBeDefined();
    service.forget(credential.accessKeyId);
    expect(await lookup(service, credential.accessKeyId)).toBeUndefined();
  });

  it('forgetAll drops every cached key', async () => {
    const { service, repository, credential, clock } = await issued();
    await lookup(service, credential.accessKeyId);
    await repository.revoke(credential.accessKeyId, clock.now());
    service.forgetAll();
    expect(await lookup(service, credential.accessKeyId)).toBeUndefined();
  });

  it('a lookup that read the store before a revocation is not cached after it', async () => {
    const { service, repository, credential } = await issued();
    const release = repository.holdLookups();
    const racing = lookup(service, credential.accessKeyId);
    await service.revoke(callerOf(ADMIN), credential.accessKeyId);
    release();
    await racing;
    expect(await lookup(service, credential.accessKeyId)).toBeUndefined();
  });

  it('a lookup that starts after a revocation does not join one that read the store before it', async () => {
    const { service, repository, credential, clock } = await issued();
    const release = repository.holdLookups();
    const racing = lookup(service, credential.accessKeyId);
    await repository.revoke(credential.accessKeyId, clock.now());
    service.forget(credential.accessKeyId);
    const after = lookup(service, credential.accessKeyId);
    release();
    await racing;
    expect(await after).toBeUndefined();
  });

  it('a secret moved onto another row does not unwrap: the AAD binds the access key id (500, not a signature)', async () => {
    const w = world();
    const a = await w.service.create(callerOf(ADMIN), { name: 'a' });
    const b = await w.service.create(callerOf(ADMIN), { name: 'b' });
    w.repository.tamper(b.accessKeyId, { wrappedSecret: w.repository.row(a.accessKeyId)!.wrappedSecret });
    await expectKeyholdError(Promise.resolve(w.service.signingCredential(b.accessKeyId)), 'KH_ERR_INTERNAL');
  });
});

describe('AwsCredentialService.list and revoke', () => {
  it('lists live keys by name, a page at a time, never with a secret', async () => {
    const { service } = world();
    for (const name of ['c', 'a', 'b']) await service.create(callerOf(ADMIN), { name });
    const first = await service.list(callerOf(WRITER), { limit: 2 });
    expect(first.credentials.map((c) => c.name)).toEqual(['a', 'b']);
    expect(first.hasMore).toBe(true);
    const last = first.credentials[1]!;
    const second = await service.list(callerOf(WRITER), { after: { name: last.name, accessKeyId: last.accessKeyId }, limit: 2 });
    expect(second).toMatchObject({ credentials: [{ name: 'c' }], hasMore: false });
    for (const credential of [...first.credentials, ...second.credentials]) {
      expect(Object.keys(credential).sort()).toEqual(['accessKeyId', 'createdAt', 'createdBy', 'expiresAt', 'name', 'principal', 'revokedAt']);
    }
  });

  it('refuses a list without aws-credentials:read with 403', async () => {
    const { service } = world();
    await expectKeyholdError(service.list(callerOf({ ...POD, id: 'k8s:other:api' }), { limit: 10 }), 'KH_ERR_FORBIDDEN');
  });

  it('revokes a live key once, recording the change; then, and for unknown or malformed ids, 404', async () => {
    const { service, repository } = world();
    const issued = await service.create(callerOf(ADMIN), { name: 'x' });
    const caller = callerOf(WRITER);
    await service.revoke(caller, issued.accessKeyId);
    expect(caller.trail.recordedAction).toBe('aws-credentials:revoke');
    expect(repository.changes).toEqual([{ action: 'revoke', subject: issued.accessKeyId, at: expect.any(Date) }]);
    await expectKeyholdError(service.revoke(callerOf(ADMIN), issued.accessKeyId), 'KH_ERR_AWS_CREDENTIAL_NOT_FOUND');
    await expectKeyholdError(service.revoke(callerOf(ADMIN), 'KHAKAAAAAAAAAAAAAAAA'), 'KH_ERR_AWS_CREDENTIAL_NOT_FOUND');
    await expectKeyholdError(service.revoke(callerOf(ADMIN), 'nope'), 'KH_ERR_AWS_CREDENTIAL_NOT_FOUND');
  });

  it('refuses a revoke without aws-credentials:write with 403, and the key keeps signing', async () => {
    const { service } = world();
    const issued = await service.create(callerOf(ADMIN), { name: 'x' });
    await expectKeyholdError(service.revoke(callerOf({ ...POD, id: 'k8s:other:api' }), issued.accessKeyId), 'KH_ERR_FORBIDDEN');
    expect(await lookup(service, issued.accessKeyId)).toBeDefined();
  });
});
