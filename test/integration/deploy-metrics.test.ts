import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { metricNames } from '../helpers/prometheus-text.js';

const RULES_PATH = new URL('../../deploy/prometheus/keyhold-alerts.yml', import.meta.url);
const DASHBOARD_PATH = new URL('../../deploy/grafana/keyhold-dashboard.json', import.meta.url);

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
}
interface Dashboard {
  panels: { title: string; targets?: { expr: string }[] }[];
}

const rules = parse(readFileSync(RULES_PATH, 'utf8')) as RuleFile;
const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
const alertExpressions = rules.groups.flatMap((group) => group.rules.map((rule) => [rule.alert ?? rule.record!, rule.expr] as const));
const dashboardExpressions = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => [panel.title, target.expr] as const));

/** What Prometheus itself adds to every target. */
const PROMETHEUS_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
/** PromQL's functions, aggregations and keywords: every other identifier outside braces, brackets and `by (…)` is a metric. */
const PROMQL_WORDS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'topk', 'bottomk', 'quantile', 'by', 'without', 'on', 'ignoring',
  'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'rate', 'irate', 'increase', 'delta', 'absent',
  'histogram_quantile', 'max_over_time', 'min_over_time', 'avg_over_time', 'sum_over_time', 'clamp_min', 'clamp_max',
  'abs', 'time', 'vector', 'scalar', 'label_replace',
]);

/** Grafana's variables, as a dashboard query would be sent. */
function withGrafanaVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$job', 'keyhold').replaceAll('$instance', '.*');
}

/** The metric names a PromQL expression selects. */
function metricsNamedIn(expr: string): string[] {
  const stripped = withGrafanaVariables(expr)
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+\w+/g, ' ');
  return [...stripped.matchAll(/(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((word) => !PROMQL_WORDS.has(word));
}

const promtool = spawnSync('promtool', ['--version']).status === 0;

describe('the shipped alert rules and dashboard', () => {
  let t: TestApp;
  let exported: Set<string>;

  beforeAll(async () => {
    t = await buildTestApp('sqlite', { env: { KEYHOLD_METRICS_PORT: '0' } });
    const url = await t.metrics!.listen();
    // Some traffic, so that what is exported is what a running service exports.
    await t.call('POST', '/v1/keys', { name: 'k', rotationPeriodSeconds: 3600 });
    await t.call('POST', '/v1/keys/k/datakey', {});
    const text = await (await fetch(url)).text();
    const families = await t.metrics!.families();
    exported = new Set(PROMETHEUS_SERIES);
    for (const name of metricNames(text)) exported.add(name);
    // A histogram's family name is exported as its _bucket, _sum and _count series (a summary's as _sum and _count).
    for (const { name, type } of families) {
      if (type === 'histogram' || type === 'summary') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${name}${suffix}`);
    }
  });
  afterAll(async () => t?.close());

  it('ship alerts and panels for the main metrics', () => {
    expect(alertExpressions.length).toBeGreaterThanOrEqual(8);
    expect(dashboardExpressions.length).toBeGreaterThanOrEqual(12);
  });

  it.each(alertExpressions)('alert %s names only metrics Keyhold exports', (_name, expr) => {
    const named = metricsNamedIn(expr);
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((name) => !exported.has(name))).toEqual([]);
  });

  it.each(dashboardExpressions)('panel "%s" names only metrics Keyhold exports', (_title, expr) => {
    const named = metricsNamedIn(expr);
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((name) => !exported.has(name))).toEqual([]);
  });

  it('the name check catches a misspelt metric', () => {
    expect(metricsNamedIn('sum by (key) (rate(keyhold_crypto_operation_total{outcome="ok"}[5m])) > 1')).toEqual(['keyhold_crypto_operation_total']);
  });

  describe(promtool ? 'promtool' : 'promtool (not installed: apt-get install prometheus; these checks are skipped)', () => {
    it.skipIf(!promtool)('passes `promtool check rules` on the alert rules', () => {
      execFileSync('promtool', ['check', 'rules', RULES_PATH.pathname], { stdio: 'pipe' });
    });

    it.skipIf(!promtool)("parses every dashboard query (as recording rules), Grafana's variables filled in", () => {
      const dir = mkdtempSync(join(tmpdir(), 'keyhold-dashboard-'));
      try {
        const file = join(dir, 'dashboard-rules.yml');
        const recorded = dashboardExpressions.map(([, expr], i) => ({ record: `keyhold:dashboard_panel_${i}`, expr: withGrafanaVariables(expr) }));
        writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules: recorded }] }));
        execFileSync('promtool', ['check', 'rules', file], { stdio: 'pipe' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
