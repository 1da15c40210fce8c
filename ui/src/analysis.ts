/** Pure helpers of the console, unit-tested without a browser. */
import type { AuditRecord, Policy } from './types.js';

export const DECRYPTION_FAILED = 'KH_ERR_DECRYPTION_FAILED';

export function isDenial(record: Pick<AuditRecord, 'decision' | 'outcome'>): boolean {
  return record.decision === 'deny' || record.outcome === 'KH_ERR_FORBIDDEN';
}

export function isDecryptionFailure(record: Pick<AuditRecord, 'outcome'>): boolean {
  return record.outcome === DECRYPTION_FAILED;
}

export interface PrincipalSeries {
  readonly principal: string;
  /** Oldest bucket first. */
  readonly denials: number[];
  readonly failures: number[];
  /** Indexes of the buckets flagged as spikes (denials and failures counted together). */
  readonly spikes: number[];
  readonly median: number;
}

export interface SpikeRule {
  /** A bucket is a spike when it is at least `factor` times the principal's median bucket… */
  readonly factor: number;
  /** …and at least this many events. */
  readonly minimum: number;
}

export const DEFAULT_SPIKE_RULE: SpikeRule = { factor: 3, minimum: 5 };

function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Buckets denials and decryption failures per principal into `buckets` windows of `bucketMs` ending at `now`, and
 * flags each bucket that is at least `factor` × the principal's median and at least `minimum`.
 */
export function bucketAnomalies(
  records: readonly Pick<AuditRecord, 'time' | 'principalId' | 'decision' | 'outcome'>[],
  now: number,
  options: { bucketMs?: number; buckets?: number; rule?: SpikeRule } = {},
): PrincipalSeries[] {
  const bucketMs = options.bucketMs ?? 60_000;
  const count = options.buckets ?? 60;
  const rule = options.rule ?? DEFAULT_SPIKE_RULE;
  const start = now - bucketMs * count;
  const series = new Map<string, { denials: number[]; failures: number[] }>();
  for (const record of records) {
    const denial = isDenial(record);
    const failure = isDecryptionFailure(record);
    if (!denial && !failure) continue;
    const time = Date.parse(record.time);
    if (!(time >= start && time < now + bucketMs)) continue;
    const index = Math.min(count - 1, Math.floor((time - start) / bucketMs));
    const principal = record.principalId ?? '(unauthenticated)';
    let entry = series.get(principal);
    if (entry === undefined) {
      entry = { denials: new Array<number>(count).fill(0), failures: new Array<number>(count).fill(0) };
      series.set(principal, entry);
    }
    if (denial) entry.denials[index]! += 1;
    if (failure) entry.failures[index]! += 1;
  }
  return [...series.entries()]
    .map(([principal, { denials, failures }]) => {
      const totals = denials.map((value, index) => value + failures[index]!);
      const typical = median(totals);
      const spikes = totals.flatMap((value, index) => (value >= rule.minimum && value >= rule.factor * typical ? [index] : []));
      return { principal, denials, failures, spikes, median: typical };
    })
    .sort((a, b) => b.spikes.length - a.spikes.length || a.principal.localeCompare(b.principal));
}

/** `*`-only globs as policies write them (src/policy/glob.ts); a glob with `${principal.…}` depends on the caller. */
export function keyGlobMatches(glob: string, name: string): boolean | 'depends' {
  if (glob.includes('${')) return 'depends';
  const pieces = glob.split('*');
  if (pieces.length === 1) return glob === name;
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) return false;
  let position = first.length;
  const end = name.length - last.length;
  for (const piece of pieces.slice(1, -1)) {
    const found = name.indexOf(piece, position);
    if (found === -1 || found + piece.length > end) return false;
    position = found + piece.length;
  }
  return true;
}

export interface Coverage {
  readonly policy: string;
  readonly statement: number;
  readonly sid: string | undefined;
  readonly effect: 'allow' | 'deny';
  readonly principals: readonly string[];
  readonly actions: readonly string[];
  readonly via: string;
  readonly conditional: boolean;
}

/** Every statement whose key globs name this key, with the glob that does. */
export function policyCoverage(policies: readonly Policy[], keyName: string): Coverage[] {
  const found: Coverage[] = [];
  for (const policy of policies) {
    policy.statements.forEach((statement, index) => {
      for (const glob of statement.keys) {
        const match = keyGlobMatches(glob, keyName);
        if (match === false) continue;
        found.push({
          policy: policy.name,
          statement: index,
          sid: statement.sid,
          effect: statement.effect,
          principals: statement.principals,
          actions: statement.actions,
          via: glob,
          conditional: match === 'depends',
        });
        return;
      }
    });
  }
  return found;
}

/** "3d 4h", "12m": a duration for tables. */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let seconds = Math.floor(Math.abs(ms) / 1000);
  const days = Math.floor(seconds / 86_400);
  seconds -= days * 86_400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  if (days > 0) return `${sign}${days}d ${hours}h`;
  if (hours > 0) return `${sign}${hours}h ${minutes}m`;
  if (minutes > 0) return `${sign}${minutes}m`;
  return `${sign}${seconds % 60}s`;
}
