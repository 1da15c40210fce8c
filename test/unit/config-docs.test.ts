import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VARIABLE_NAMES, variableSchema, type VariableName } from '../../src/config-schema.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const HEADER = '| variable | default | meaning |';

/** The default's cell: the literal `default` in backquotes, else the schema's `defaultText`, else `–` for none. */
function defaultCell(name: VariableName): string {
  const schema = variableSchema(name);
  if (schema.default !== undefined) return `\`${String(schema.default)}\``;
  return schema.defaultText ?? '–';
}

function meaningCell(name: VariableName): string {
  const schema = variableSchema(name) as ReturnType<typeof variableSchema> & { minimum?: number; maximum?: number };
  const range = schema.minimum === undefined ? '' : ` (${schema.minimum}–${schema.maximum})`;
  return `${schema.description ?? ''}${range}`;
}

/** The configuration table as the schema describes it, one row per variable in the schema's order. */
function expectedRows(): string[] {
  return VARIABLE_NAMES.map((name) => `| \`${name}\` | ${defaultCell(name)} | ${meaningCell(name)} |`);
}

/** The rows of the README's table under `## Configuration`, from its header to the first line that is not a row. */
function readmeRows(): string[] {
  const section = README.slice(README.indexOf('\n## Configuration\n'));
  const lines = section.split('\n');
  const start = lines.indexOf(HEADER);
  if (start === -1) throw new Error(`the README's Configuration section has no table headed ${HEADER}`);
  const rows: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line);
  }
  return rows;
}

function cells(row: string): string[] {
  return row.split(' | ').map((cell) => cell.replace(/^\| |\s\|$/g, ''));
}

describe("the README's configuration table", () => {
  it('names every variable of the schema, and no other, in the same order', () => {
    expect(readmeRows().map((row) => cells(row)[0])).toEqual(VARIABLE_NAMES.map((name) => `\`${name}\``));
  });

  it("gives every variable the schema's default", () => {
    const documented = Object.fromEntries(readmeRows().map((row) => [cells(row)[0], cells(row)[1]]));
    expect(documented).toEqual(Object.fromEntries(VARIABLE_NAMES.map((name) => [`\`${name}\``, defaultCell(name)])));
  });

  it("is exactly the table the schema renders (paste the expected rows into README.md when this fails)", () => {
    expect(readmeRows().join('\n')).toBe(expectedRows().join('\n'));
  });
});

describe('the configuration schema', () => {
  it('describes every variable', () => {
    for (const name of VARIABLE_NAMES) expect(variableSchema(name).description, name).toMatch(/\S/);
  });

  it('names only KEYHOLD_* variables', () => {
    for (const name of VARIABLE_NAMES) expect(name).toMatch(/^KEYHOLD_[A-Z][A-Z0-9_]*$/);
  });
});
