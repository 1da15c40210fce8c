import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult, type IConfiguration } from 'dependency-cruiser';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RULES = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs')) as IConfiguration;

const trees: string[] = [];
afterAll(() => {
  for (const tree of trees) rmSync(tree, { recursive: true, force: true });
});

/** Cruises a throwaway tree of `files` (path → source) with the project's rules; returns the violated rule names. */
async function violations(files: Record<string, string>, roots: string[] = ['src']): Promise<string[]> {
  const tree = mkdtempSync(join(tmpdir(), 'keyhold-rules-'));
  trees.push(tree);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(tree, path)), { recursive: true });
    writeFileSync(join(tree, path), text);
  }
  const { tsConfig: _tsConfig, ...options } = RULES.options ?? {};
  const result = await cruise(roots, { ...options, baseDir: tree, ruleSet: { forbidden: RULES.forbidden, allowed: RULES.allowed, allowedSeverity: RULES.allowedSeverity }, validate: true });
  const output = result.output as ICruiseResult;
  return output.summary.violations.map((violation) => violation.rule.name);
}

describe('the dependency rules', () => {
  it('refuse an import from the crypto core into storage', async () => {
    expect(
      await violations({
        'src/crypto/aes-gcm.ts': "import { createDatabase } from '../storage/database.ts';\nexport const x = createDatabase;\n",
        'src/storage/database.ts': 'export const createDatabase = 1;\n',
      }),
    ).toContain('not-in-allowed');
  });

  it('refuse a cycle between two folders that may otherwise import each other', async () => {
    expect(
      await violations({
        'src/cli/a.ts': "import { b } from '../compose.ts';\nexport const a = b;\n",
        'src/compose.ts': "import { a } from './cli/a.ts';\nexport const b = 1;\nexport const c = a;\n",
      }),
    ).toContain('no-circular');
  });

  it('refuse the SDK to the server, and its sources or internals to the CLI', async () => {
    const sdk = {
      'sdk/dist/index.js': "export { createClient } from './client.js';\n",
      'sdk/dist/client.js': 'export const createClient = 1;\n',
      'sdk/src/client.ts': 'export const createClient = 1;\n',
    };
    expect(
      await violations({ ...sdk, 'src/keys/uses-sdk.ts': "import { createClient } from '../../sdk/dist/index.js';\nexport const x = createClient;\n" }),
    ).toContain('server-not-sdk');
    expect(
      await violations({ ...sdk, 'src/cli/deep.ts': "import { createClient } from '../../sdk/dist/client.js';\nexport const x = createClient;\n" }),
    ).toContain('cli-sdk-as-package');
    expect(
      await violations({ ...sdk, 'src/cli/sources.ts': "import { createClient } from '../../sdk/src/client.ts';\nexport const x = createClient;\n" }),
    ).toContain('cli-sdk-as-package');
    expect(
      await violations({ ...sdk, 'src/cli/package.ts': "import { createClient } from '../../sdk/dist/index.js';\nexport const x = createClient;\n" }),
    ).toEqual([]);
  });

  it('let only the root-key provider load the optional PKCS#11 addon', async () => {
    const addon = {
      'package.json': JSON.stringify({ name: 'tree', optionalDependencies: { pkcs11js: '*' } }),
      'node_modules/pkcs11js/package.json': JSON.stringify({ name: 'pkcs11js', main: 'index.js' }),
      'node_modules/pkcs11js/index.js': 'module.exports = {};\n',
    };
    const loader = (folder: string) => ({
      ...addon,
      [`src/${folder}/pkcs11.ts`]: "import { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);\nexport const addon = require('pkcs11js');\n",
    });
    expect(await violations(loader('root-keys'))).toEqual([]);
    expect(await violations(loader('keys'))).toEqual(expect.arrayContaining(['pkcs11-addon', 'not-in-allowed']));
  });

  it('allow what the layers allow', async () => {
    expect(
      await violations({
        'src/keys/lifecycle.ts': "import { KeyholdError } from '../errors.ts';\nexport const e = KeyholdError;\n",
        'src/errors.ts': 'export class KeyholdError extends Error {}\n',
      }),
    ).toEqual([]);
  });
});

describe('the console\'s rules', () => {
  it('refuse an import of server code into the console', async () => {
    expect(
      await violations(
        {
          'ui/src/main.ts': "import { KeyholdError } from '../../src/errors.ts';\nexport const e = KeyholdError;\n",
          'src/errors.ts': 'export class KeyholdError extends Error {}\n',
        },
        ['ui/src'],
      ),
    ).toContain('ui-stands-alone');
  });

  it('refuse an import of the console into the server', async () => {
    expect(
      await violations({
        'src/http/routes/ui.ts': "import { x } from '../../../ui/src/x.ts';\nexport const y = x;\n",
        'ui/src/x.ts': 'export const x = 1;\n',
      }),
    ).toContain('server-not-ui');
  });
});

describe('configuration', () => {
  it('is read from process.env only by the CLI commands', () => {
    const readers: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (path.endsWith('.ts') && /\bprocess\.env\b/.test(readFileSync(path, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''))) {
          readers.push(path.slice(ROOT.length));
        }
      }
    };
    walk(join(ROOT, 'src'));
    expect(readers.filter((path) => !path.startsWith('src/cli/'))).toEqual([]);
  });
});
