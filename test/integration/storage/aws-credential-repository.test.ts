import { expect, it } from 'vitest';
import type { StoredAwsCredential } from '../../../src/aws-kms/aws-credential-repository.js';
import { KnexAwsCredentialRepository } from '../../../src/storage/knex-aws-credential-repository.js';
import { KnexChangeRepository } from '../../../src/storage/knex-change-repository.js';
import { KnexRootKeyRepository } from '../../../src/storage/knex-root-key-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { T0 } from '../../helpers/key-fixtures.js';
import { sharedStore } from './store.js';

const ROOT = { id: 'root-a', checkValue: 'check-a' };
const later = (ms: number) => new Date(T0.getTime() + ms);
let serial = 0;

/** A fresh access key id of the right shape: the store is shared, so each test writes its own. */
function accessKeyId(): string {
  serial += 1;
  return `KHAK${serial.toString(2).padStart(16, '2').replace(/0/g, 'A').replace(/1/g, 'B')}`;
}

function credential(name: string, overrides: Partial<StoredAwsCredential> = {}): StoredAwsCredential {
  return {
    accessKeyId: accessKeyId(),
    name,
    principal: {
      id: 'spiffe://prod.example/ns/shop/sa/api',
      type: 'spiffe',
      attributes: { trustDomain: 'prod.example', path: '/ns/shop/sa/api', namespace: 'shop', serviceAccount: 'api' },
    },
    createdBy: 'token:bootstrap-admin',
    createdAt: T0,
    expiresAt: null,
    revokedAt: null,
    rootKeyId: ROOT.id,
    wrappedSecret: Buffer.from([0, 1, 2, 254, 255]),
    ...overrides,
  };
}

describeEachDatabase('AwsCredentialRepository contract', (kind) => {
  const store = sharedStore(kind);
  const credentials = () => new KnexAwsCredentialRepository(store.db);
  const changes = () => new KnexChangeRepository(store.db);
  const recordRoot = async () => {
    if ((await new KnexRootKeyRepository(store.db).list()).length === 0) await new KnexRootKeyRepository(store.db).recordIfFirst(ROOT, T0);
  };

  it('gives back an inserted key by its access key id, principal attributes, wrapped secret and times included', async () => {
    await recordRoot();
    const stored = credential('c.find', { expiresAt: later(1000) });
    await credentials().insert(stored);
    expect(await credentials().find(stored.accessKeyId)).toEqual(stored);
    expect(await credentials().find('KHAKZZZZZZZZZZZZZZZZ')).toBeUndefined();
  });

  it('refuses a second key of one access key id with KH_ERR_AWS_CREDENTIAL_EXISTS', async () => {
    await recordRoot();
    const stored = credential('c.id');
    await credentials().insert(stored);
    await expect(credentials().insert(credential('c.id-other', { accessKeyId: stored.accessKeyId }))).rejects.toMatchObject({
      code: 'KH_ERR_AWS_CREDENTIAL_EXISTS',
    });
  });

  it('refuses a second live key of one name with KH_ERR_AWS_CREDENTIAL_EXISTS, and takes the name again once it is revoked', async () => {
    await recordRoot();
    const first = credential('c.same-name');
    await credentials().insert(first);
    await expect(credentials().insert(credential('c.same-name'))).rejects.toMatchObject({ code: 'KH_ERR_AWS_CREDENTIAL_EXISTS' });
    await credentials().revoke(first.accessKeyId, later(1));
    await credentials().insert(credential('c.same-name'));
  });

  it('revokes a live key once, recording an aws-credential revoke in the same commit', async () => {
    await recordRoot();
    const stored = credential('c.revoke');
    await credentials().insert(stored);
    const before = await changes().latestSeq();
    expect(await credentials().revoke(stored.accessKeyId, later(5))).toBe(true);
    expect(await credentials().revoke(stored.accessKeyId, later(6))).toBe(false);
    expect(await credentials().revoke('KHAKZZZZZZZZZZZZZZZZ', later(6))).toBe(false);
    expect((await credentials().find(stored.accessKeyId))!.revokedAt).toEqual(later(5));
    expect((await changes().since(before, 10)).map((c) => [c.kind, c.action, c.subject])).toEqual([['aws-credential', 'revoke', stored.accessKeyId]]);
  });

  it('lists live keys by name then id, after a cursor, without their secrets, and leaves revoked ones out', async () => {
    await recordRoot();
    const c = credential('cl.c');
    const b = credential('cl.b');
    const revoked = credential('cl.a');
    for (const stored of [c, b, revoked]) await credentials().insert(stored);
    await credentials().revoke(revoked.accessKeyId, T0);
    const listed = (await credentials().list({ after: { name: 'cl.', accessKeyId: '' }, limit: 100 })).filter((x) => x.name.startsWith('cl.'));
    expect(listed.map((x) => x.name)).toEqual(['cl.b', 'cl.c']);
    const { rootKeyId: _r, wrappedSecret: _w, ...record } = b;
    expect(listed[0]).toEqual(record);
    expect((await credentials().list({ after: { name: 'cl.b', accessKeyId: b.accessKeyId }, limit: 1 })).map((x) => x.name)).toEqual(['cl.c']);
  });
});
