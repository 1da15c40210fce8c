import type { Io } from './io.js';
import { oneLine } from './remote.js';

/** Prints the API's own JSON, as `--json` asks: what a script would have had from curl. */
export function printJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export type Column<T> = readonly [header: string, cell: (row: T) => unknown];

/** A cell as text: null and undefined as "-", arrays joined, objects as compact JSON; never a control character. */
export function cellText(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.map(cellText).join(',');
  if (typeof value === 'object') return Object.keys(value).length === 0 ? '-' : oneLine(JSON.stringify(value));
  return oneLine(String(value));
}

/** A table of left-aligned columns, two spaces apart, with an upper-case header; "(none)" for no rows. */
export function renderTable<T>(columns: ReadonlyArray<Column<T>>, rows: readonly T[]): string {
  if (rows.length === 0) return '(none)\n';
  const cells = [columns.map(([header]) => header.toUpperCase()), ...rows.map((row) => columns.map(([, cell]) => cellText(cell(row))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((text, i) => (i === line.length - 1 ? text : text.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

export function printTable<T>(io: Io, columns: ReadonlyArray<Column<T>>, rows: readonly T[]): void {
  io.stdout.write(renderTable(columns, rows));
}

/** One record as `field: value` lines, for `show` and `get`. */
export function printFields(io: Io, fields: ReadonlyArray<readonly [string, unknown]>): void {
  const width = Math.max(...fields.map(([name]) => name.length)) + 1;
  io.stdout.write(fields.map(([name, value]) => `${`${name}:`.padEnd(width)} ${cellText(value)}`).join('\n') + '\n');
}

/** Prints `value` as JSON with `--json`, otherwise as `human` renders it. */
export function emit<T>(io: Io, json: boolean | undefined, value: T, human: (value: T) => void): void {
  if (json === true) printJson(io, value);
  else human(value);
}
