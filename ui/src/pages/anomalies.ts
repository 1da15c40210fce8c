import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import { readAll } from '../api.js';
import { bucketAnomalies, DECRYPTION_FAILED, DEFAULT_SPIKE_RULE, type PrincipalSeries } from '../analysis.js';
import { ErrorLine, type Session } from '../shared.js';
import type { AuditRecord } from '../types.js';

const BUCKET_MS = 60_000;
const BUCKETS = 60;

function Chart({ series }: { series: PrincipalSeries }): VNode {
  const totals = series.denials.map((d, i) => d + series.failures[i]!);
  const peak = Math.max(1, ...totals);
  const width = 6;
  const height = 40;
  return html`<svg class="chart" viewBox=${`0 0 ${BUCKETS * width} ${height}`} width=${BUCKETS * width} height=${height} role="img" aria-label=${`${series.principal}: per minute, last hour`}>
    ${totals.map((total, i) => {
      const failures = (series.failures[i]! / peak) * height;
      const denials = (series.denials[i]! / peak) * height;
      const spike = series.spikes.includes(i);
      return html`<g key=${i}>
        ${spike && html`<rect class="spike-band" x=${i * width} y="0" width=${width} height=${height} />`}
        <rect class="bar-failure" x=${i * width + 1} y=${height - failures} width=${width - 2} height=${failures}><title>${series.failures[i]} decryption failures</title></rect>
        <rect class="bar-denial" x=${i * width + 1} y=${height - failures - denials} width=${width - 2} height=${denials}><title>${series.denials[i]} denials</title></rect>
      </g>`;
    })}
  </svg>`;
}

/** Denials and decryption failures per principal, per minute over the last hour, from the audit log. */
export function AnomaliesPage({ session }: { session: Session }): VNode {
  const [series, setSeries] = useState<PrincipalSeries[] | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [now, setNow] = useState(Date.now());
  const load = async (): Promise<void> => {
    const at = Date.now();
    const since = new Date(at - BUCKET_MS * BUCKETS).toISOString();
    try {
      const [denials, failures] = await Promise.all([
        readAll<AuditRecord>(session.api, `/v1/audit?since=${encodeURIComponent(since)}&outcome=KH_ERR_FORBIDDEN`, 'records', 5000),
        readAll<AuditRecord>(session.api, `/v1/audit?since=${encodeURIComponent(since)}&outcome=${DECRYPTION_FAILED}`, 'records', 5000),
      ]);
      setNow(at);
      setSeries(bucketAnomalies([...denials, ...failures], at, { bucketMs: BUCKET_MS, buckets: BUCKETS }));
      setError(undefined);
    } catch (caught) {
      setError(caught);
    }
  };
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 10_000);
    return () => clearInterval(timer);
  }, []);
  return html`<section>
    <h1>Anomalies</h1>
    <p class="muted">Denials (amber) and decryption failures (red) per principal, per minute over the last hour.
      A minute is flagged when it has at least ${DEFAULT_SPIKE_RULE.minimum} events and at least ${DEFAULT_SPIKE_RULE.factor}× the principal's median minute.</p>
    <button type="button" onClick=${() => void load()}>Refresh</button>
    <${ErrorLine} error=${error} />
    ${series === undefined
      ? html`<p>Loading…</p>`
      : series.length === 0
        ? html`<p>No denial or decryption failure in the last hour.</p>`
        : html`<table class="anomalies">
            <thead><tr><th>Principal</th><th>Denials</th><th>Decryption failures</th><th>Last hour</th><th>Spikes</th></tr></thead>
            <tbody>
              ${series.map(
                (s) => html`<tr key=${s.principal} class=${s.spikes.length > 0 ? 'spiking' : ''} data-principal=${s.principal}>
                  <td>${s.principal}</td>
                  <td>${s.denials.reduce((a, b) => a + b, 0)}</td>
                  <td>${s.failures.reduce((a, b) => a + b, 0)}</td>
                  <td><${Chart} series=${s} /></td>
                  <td>${s.spikes.length === 0
                    ? '—'
                    : s.spikes.map((i) => {
                        const at = new Date(now - BUCKET_MS * (BUCKETS - i)).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
                        return html`<span class="spike" key=${i}>spike at ${at}: ${s.failures[i]} decryption failures, ${s.denials[i]} denials</span>`;
                      })}</td>
                </tr>`,
              )}
            </tbody>
          </table>`}
  </section>`;
}
