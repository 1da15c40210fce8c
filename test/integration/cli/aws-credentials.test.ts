import { expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { CLI_IS_BUILT, cliServerPerSuite, runCli } from '../../helpers/cli.js';

describeEachDatabase('keyhold aws-credentials', (kind) => {
  const server = cliServerPerSuite(kind);
  const { keyhold } = server;

  it.skipIf(!CLI_IS_BUILT)('issues a key, printing its secret once and how to use it, lists it without the secret, and revokes it with --yes', async () => {
    const created = await keyhold('aws-credentials', 'create', 'shop', '--principal', 'k8s:shop:api', '--ttl', '3600');
    expect(created.code, created.stderr).toBe(0);
    const accessKeyId = /^access key id: +(KHAK[A-Z2-7]{16})$/m.exec(created.stdout)?.[1];
    const secret = /^secret access key: +([A-Za-z0-9+/]{40})$/m.exec(created.stdout)?.[1];
    expect(accessKeyId).toBeDefined();
    expect(secret).toBeDefined();
    expect(created.stdout).toMatch(/^principal: +k8s:shop:api$/m);
    expect(created.stderr).toContain(`AWS_ACCESS_KEY_ID=${accessKeyId} AWS_SECRET_ACCESS_KEY=`);
    expect(created.stderr).not.toContain(secret!);
    expect((await server.t.services.awsCredentials.signingCredential(accessKeyId!))?.secretAccessKey).toBe(secret);

    const listed = await keyhold('aws-credentials', 'list');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`^${accessKeyId} +shop +k8s:shop:api `, 'm'));
    expect(listed.stdout).not.toContain(secret!);

    expect((await keyhold('aws-credentials', 'revoke', accessKeyId!)).code).toBe(2);
    const revoked = await keyhold('aws-credentials', 'revoke', accessKeyId!, '--yes');
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toBe(`revoked AWS access key ${accessKeyId}\n`);
    const again = await keyhold('aws-credentials', 'revoke', accessKeyId!, '--yes');
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/^keyhold: KH_ERR_AWS_CREDENTIAL_NOT_FOUND: /);
  });

  it.skipIf(!CLI_IS_BUILT)('prints the API\'s JSON with --json, and refuses a workload binding another principal (exit 3)', async () => {
    const created = await keyhold('aws-credentials', 'create', 'json-key', '--json');
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: 'json-key', principal: { id: 'token:bootstrap-admin', type: 'token' }, secretAccessKey: expect.any(String) });
    expect(JSON.parse((await keyhold('aws-credentials', 'list', '--json')).stdout).credentials).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'json-key' })]),
    );

    const token = JSON.parse((await keyhold('tokens', 'create', 'ops', '--json')).stdout).token as string;
    const grant = { statements: [{ effect: 'allow', principals: ['token:ops'], actions: ['aws-credentials:write'], keys: ['*'] }] };
    expect((await server.t.call('PUT', '/v1/policies/ops', grant)).status).toBe(201);
    const refused = await runCli(['aws-credentials', 'create', 'x', '--principal', 'k8s:shop:api'], { env: { ...server.env, KEYHOLD_TOKEN: token } });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^keyhold: KH_ERR_FORBIDDEN: /);
    expect((await keyhold('aws-credentials', 'create', 'y', '--ttl', '59')).code).toBe(2);
  });
});
