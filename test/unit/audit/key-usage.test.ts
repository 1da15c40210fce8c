import { describe, expect, it } from 'vitest';
import { DEFAULT_USAGE_WINDOW_MS, usageWindow } from '../../../src/audit/key-usage.js';
import { KeyholdError } from '../../../src/errors.js';

const HOUR_MS = 3_600_000;
const NOW = new Date(Date.parse('2026-05-10T12:34:56.789Z'));
const d = (text: string) => new Date(Date.parse(text));

describe('usageWindow', () => {
  it('by default, the 30 days up to now, widened to whole hours: the current hour is in it', () => {
    expect(usageWindow(NOW, undefined, undefined)).toEqual({
      since: new Date(Math.floor((NOW.getTime() - DEFAULT_USAGE_WINDOW_MS) / HOUR_MS) * HOUR_MS),
      until: d('2026-05-10T13:00:00Z'),
    });
  });

  it('a given window is widened outwards to whole hours; an hour boundary stays where it is', () => {
    expect(usageWindow(NOW, d('2026-05-01T10:59:59Z'), d('2026-05-02T00:00:00.001Z'))).toEqual({
      since: d('2026-05-01T10:00:00Z'),
      until: d('2026-05-02T01:00:00Z'),
    });
    expect(usageWindow(NOW, d('2026-05-01T10:00:00Z'), d('2026-05-02T00:00:00Z'))).toEqual({
      since: d('2026-05-01T10:00:00Z'),
      until: d('2026-05-02T00:00:00Z'),
    });
  });

  it('since alone: the window runs to now; until alone: it starts 30 days before', () => {
    expect(usageWindow(NOW, d('2026-05-01T00:00:00Z'), undefined).until).toEqual(d('2026-05-10T13:00:00Z'));
    expect(usageWindow(NOW, undefined, d('2026-02-01T00:00:00Z')).since).toEqual(d('2026-01-02T00:00:00Z'));
  });

  it('refuses since at or after until, as it was asked, before widening', () => {
    for (const [since, until] of [
      [d('2026-05-01T10:00:00Z'), d('2026-05-01T10:00:00Z')],
      [d('2026-05-01T10:20:00Z'), d('2026-05-01T10:10:00Z')],
      [d('2026-05-11T00:00:00Z'), undefined],
    ] as const) {
      expect(() => usageWindow(NOW, since, until)).toThrow(expect.objectContaining({ code: 'KH_ERR_VALIDATION' }) as KeyholdError);
    }
  });
});
