import { describe, expect, it } from 'vitest';
import { bucketAnomalies, keyGlobMatches, policyCoverage } from '../../../ui/src/analysis.js';

const NOW = Date.parse('2026-01-01T01:00:00Z');
const at = (minutesAgo: number) => new Date(NOW - minutesAgo * 60_000 + 1000).toISOString();
const failure = (principal: string, minutesAgo: number) => ({ time: at(minutesAgo), principalId: principal, decision: 'allow' as const, outcome: 'KH_ERR_DECRYPTION_FAILED' });
const denial = (principal: string, minutesAgo: number) => ({ time: at(minutesAgo), principalId: principal, decision: 'deny' as const, outcome: 'KH_ERR_FORBIDDEN' });

describe('the anomaly buckets', () => {
  it('count denials and decryption failures per principal per minute', () => {
    const [series] = bucketAnomalies([failure('a', 1), failure('a', 1), denial('a', 1)], NOW);
    expect(series?.principal).toBe('a');
    expect(series?.failures[59]).toBe(2);
    expect(series?.denials[59]).toBe(1);
  });

  it('flag a minute with at least 5 events and at least 3 times the median', () => {
    const records = [...Array.from({ length: 6 }, () => failure('a', 2)), failure('a', 10)];
    expect(bucketAnomalies(records, NOW)[0]?.spikes).toEqual([58]);
  });

  it('do not flag fewer than 5 events', () => {
    expect(bucketAnomalies(Array.from({ length: 4 }, () => failure('a', 2)), NOW)[0]?.spikes).toEqual([]);
  });

  it('do not flag a principal whose every minute is as busy', () => {
    const records = Array.from({ length: 60 }, (_, minute) => Array.from({ length: 6 }, () => denial('b', minute))).flat();
    expect(bucketAnomalies(records, NOW)[0]?.spikes).toEqual([]);
  });

  it('ignore records older than the window and successes', () => {
    const ok = { time: at(1), principalId: 'a', decision: 'allow' as const, outcome: 'ok' };
    expect(bucketAnomalies([failure('a', 61), ok], NOW)).toEqual([]);
  });
});

describe('the policy coverage', () => {
  it('matches key globs as policies do', () => {
    expect(keyGlobMatches('pay*', 'payments')).toBe(true);
    expect(keyGlobMatches('*', 'payments')).toBe(true);
    expect(keyGlobMatches('pay', 'payments')).toBe(false);
    expect(keyGlobMatches('p*m*s', 'payments')).toBe(true);
    expect(keyGlobMatches('${principal.namespace}-*', 'shop-key')).toBe('depends');
  });

  it('lists each statement that names the key, once', () => {
    const coverage = policyCoverage(
      [{ name: 'p', revision: 1, statements: [{ effect: 'allow', principals: ['token:x'], actions: ['decrypt'], keys: ['pay*', 'payments'] }, { effect: 'allow', principals: ['token:y'], actions: ['encrypt'], keys: ['other'] }] }],
      'payments',
    );
    expect(coverage).toEqual([expect.objectContaining({ policy: 'p', statement: 0, via: 'pay*', conditional: false })]);
  });
});
