import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ERROR_CODE_LIST } from '../../src/errors.js';
import { renderOpenApi } from '../../src/cli/openapi.js';

const committed = readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8');

describe('openapi.yaml', () => {
  it('is exactly what the route schemas generate (run `npm run openapi` after changing a schema)', async () => {
    expect(committed).toBe(await renderOpenApi());
  });

  it('documents every error code', () => {
    for (const code of ERROR_CODE_LIST) expect(committed).toContain(code);
  });

  it('describes every route with an operationId and a problem response for errors', () => {
    const document = parse(committed) as { paths: Record<string, Record<string, { operationId?: string; responses: Record<string, unknown> }>> };
    const operations = Object.values(document.paths).flatMap((methods) => Object.values(methods));
    expect(operations.length).toBeGreaterThanOrEqual(20);
    for (const operation of operations) expect(operation.operationId).toBeTruthy();
  });
});

describe('README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

  it('lists every error code', () => {
    for (const code of ERROR_CODE_LIST) expect(readme).toContain(code);
  });

  it('shows the two commands of the quick start', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
  });
});
