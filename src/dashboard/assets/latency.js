// Latency history from the usage roll-ups: each row carries fixed histograms (`latency_hist`,
// `ttft_hist`, buckets bounded as LATENCY_BOUNDS_MS in src/store/usage.rs). Rows of several
// groups add up bucket by bucket, and percentiles are read the way the gateway reads them.

export const BOUNDS_MS = [50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

export function addHist(a, b) {
  return BOUNDS_MS.map((_, i) => (a?.[i] || 0) + (b?.[i] || 0)).concat([(a?.[BOUNDS_MS.length] || 0) + (b?.[BOUNDS_MS.length] || 0)]);
}

// The `q` quantile in ms, interpolated inside its bucket; null for an empty histogram.
export function quantile(hist, q) {
  const n = (hist || []).reduce((a, c) => a + c, 0);
  if (!n) return null;
  const rank = Math.min(1, Math.max(0, q)) * n;
  let below = 0;
  for (let i = 0; i < hist.length; i++) {
    const c = hist[i];
    if (c > 0 && below + c >= rank) {
      const lower = i === 0 ? 0 : BOUNDS_MS[i - 1];
      if (i >= BOUNDS_MS.length) return lower;
      return lower + (BOUNDS_MS[i] - lower) * Math.min(1, Math.max(0, (rank - below) / c));
    }
    below += c;
  }
  return BOUNDS_MS[BOUNDS_MS.length - 1];
}

// Per bucket start: p50 and p95 of latency and of time to first token, over every row.
export function latencyByStart(rows) {
  const merged = new Map();
  for (const r of rows) {
    const m = merged.get(r.start) || { lat: [], ttft: [] };
    merged.set(r.start, { lat: addHist(m.lat, r.latency_hist), ttft: addHist(m.ttft, r.ttft_hist) });
  }
  const out = new Map();
  for (const [start, m] of merged) {
    out.set(start, { p50: quantile(m.lat, 0.5), p95: quantile(m.lat, 0.95), ttft50: quantile(m.ttft, 0.5), ttft95: quantile(m.ttft, 0.95) });
  }
  return out;
}
