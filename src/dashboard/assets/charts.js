// Small hand-written SVG charts: bars (optionally with an error overlay) and lines.
// Colours come from CSS classes (s1..s6), so light and dark mode follow the stylesheet.
// Each chart comes in a <figure> with its figures as a table under a disclosure: the text
// alternative for screen readers and for reading exact values.

import { t } from './i18n.js';

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// The axis top: four gridline steps of 1, 2, 2.5 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 4;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return 4 * m * p;
  return 40 * p;
}

function frame(width, height, max, fmt) {
  // Room on the left for the longest y label (about 7 units per character at 12px).
  const longest = Math.max(...[0, 1, 2, 3, 4].map((i) => fmt((max * i) / 4).length));
  const pad = { l: 10 + longest * 7.5, r: 22, t: 8, b: 24 };
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img' });
  const h = height - pad.t - pad.b;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + h - (h * i) / 4;
    svg.append(el('line', { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: 'grid-line' }));
    svg.append(el('text', { x: pad.l - 5, y: y + 3, 'text-anchor': 'end' }, fmt((max * i) / 4)));
  }
  return { svg, pad, w: width - pad.l - pad.r, h };
}

function xLabels(svg, pad, w, h, labels, step) {
  const n = labels.length;
  const every = Math.max(1, Math.ceil(n / 6));
  labels.forEach((label, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    const x = pad.l + step * i + step / 2;
    svg.append(el('text', { x, y: pad.t + h + 17, 'text-anchor': 'middle' }, label));
  });
}

// The chart and, folded under it, a table of what it draws.
function figure(svg, title, head, rows) {
  const doc = document;
  const mk = (tag, text) => {
    const e = doc.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const table = mk('table');
  table.append(mk('caption', title));
  const tr = mk('tr');
  head.forEach((x, i) => {
    const th = mk('th', x);
    if (i) th.className = 'num';
    tr.append(th);
  });
  const thead = mk('thead');
  thead.append(tr);
  const tbody = mk('tbody');
  for (const r of rows) {
    const row = mk('tr');
    r.forEach((x, i) => {
      const td = mk(i ? 'td' : 'th', x);
      if (i) td.className = 'num';
      else td.setAttribute('scope', 'row');
      row.append(td);
    });
    tbody.append(row);
  }
  table.append(thead, tbody);
  const wrap = mk('div');
  wrap.className = 'table-wrap';
  wrap.append(table);
  const details = mk('details');
  details.className = 'chart-table';
  details.append(mk('summary', t('Show as a table')), wrap);
  const fig = mk('figure');
  fig.className = 'chart-figure';
  fig.append(svg, details);
  return fig;
}

// points: [{label, value, error?, title}]
export function barChart(points, { fmt = String, height = 200, width = 480, title = '', cls = 's1' } = {}) {
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const { svg, pad, w, h } = frame(width, height, max, fmt);
  svg.setAttribute('aria-label', title);
  const step = w / Math.max(1, points.length);
  const bw = Math.max(2, Math.min(38, step * 0.7));
  points.forEach((p, i) => {
    const x = pad.l + step * i + (step - bw) / 2;
    const bh = (h * p.value) / max;
    const r = el('rect', { x, y: pad.t + h - bh, width: bw, height: Math.max(0, bh), class: cls });
    r.append(el('title', {}, p.title ?? `${p.label}: ${fmt(p.value)}`));
    svg.append(r);
    if (p.error) {
      const eh = (h * p.error) / max;
      const e = el('rect', { x, y: pad.t + h - eh, width: bw, height: Math.max(0, eh), class: 'err' });
      e.append(el('title', {}, t('{label}: {n} errors', { label: p.label, n: p.error })));
      svg.append(e);
    }
  });
  xLabels(svg, pad, w, h, points.map((p) => p.label), step);
  const withErrors = points.some((p) => p.error);
  return figure(
    svg,
    title,
    withErrors ? [t('Bucket'), t('Value'), t('Errors')] : [t('Bucket'), t('Value')],
    points.map((p) => (withErrors ? [p.label, fmt(p.value), String(p.error || 0)] : [p.label, fmt(p.value)])),
  );
}

// series: [{name, values: [number]}], labels: [string]
export function lineChart(series, labels, { fmt = String, height = 220, width = 480, title = '' } = {}) {
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const { svg, pad, w, h } = frame(width, height, max, fmt);
  svg.setAttribute('aria-label', title);
  const step = w / Math.max(1, labels.length);
  series.forEach((s, si) => {
    const cls = `s${(si % 6) + 1}`;
    const pts = s.values.map((v, i) => [pad.l + step * i + step / 2, pad.t + h - (h * v) / max]);
    if (pts.length === 1) {
      svg.append(el('circle', { cx: pts[0][0], cy: pts[0][1], r: 3, class: cls }));
    } else {
      const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');
      const path = el('path', { d, class: `line ${cls}` });
      path.append(el('title', {}, s.name));
      svg.append(path);
    }
  });
  xLabels(svg, pad, w, h, labels, step);
  return figure(svg, title, [t('Bucket'), ...series.map((s) => s.name)], labels.map((l, i) => [l, ...series.map((s) => fmt(s.values[i] ?? 0))]));
}

export function legend(names) {
  const div = document.createElement('div');
  div.className = 'legend';
  names.forEach((n, i) => {
    const span = document.createElement('span');
    const sw = document.createElement('i');
    sw.className = `sw${(i % 6) + 1}`;
    span.append(sw, n);
    div.append(span);
  });
  return div;
}
