// One function per page. Each renders into `main` and registers cleanups (timers, aborts)
// in `ctx.cleanups`; everything it shows comes from the admin API.

import { api, qs, ApiError } from './api.js';
import { barChart, lineChart, legend } from './charts.js';
import { csv } from './csv.js';
import { policyEditor } from './editor.js';
import { limitFields, limitsPills, limitsWithUse } from './limits.js';
import { teamsPage, teamNames, teamSelect } from './teams.js';
import { batchesPage } from './batches.js';
import {
  h, num, compact, pct, ms, usd, dateTime, dateTimeMs, toast, modal, confirmAction, showSecret,
  table, stat, kv, errorBox, pretty, fill,
} from './ui.js';

const now = () => Math.floor(Date.now() / 1000);

// Today: the time; otherwise the date and time, short.
function shortTime(msecs) {
  const d = new Date(msecs);
  return d.toDateString() === new Date().toDateString()
    ? d.toLocaleTimeString()
    : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}
const HOUR = 3600;
const DAY = 86400;

const RANGES = {
  hour: { label: 'Last hour', secs: HOUR, bucket: 'hour' },
  day: { label: 'Last day', secs: DAY, bucket: 'hour' },
  week: { label: 'Last week', secs: 7 * DAY, bucket: 'day' },
};

// Every bucket start in [since, until), merged with the starts the API returned.
function bucketStarts(since, until, bucket, rows) {
  const step = bucket === 'day' ? DAY : HOUR;
  const set = new Set(rows.map((r) => r.start));
  for (let t = Math.floor(since / step) * step; t < until; t += step) set.add(t);
  return [...set].sort((a, b) => a - b);
}

function bucketLabel(start, bucket) {
  const d = new Date(start * 1000);
  return bucket === 'day'
    ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
    : d.toLocaleTimeString(undefined, { hour: 'numeric' });
}

// A chart's drawing width close to its width on screen, so its text stays readable.
function chartWidth(main, wide) {
  const w = main.clientWidth || 960;
  if (w < 720) return Math.max(280, w - 30);
  return wide ? Math.min(1200, w - 40) : 480;
}

function sumBy(rows, key) {
  const out = new Map();
  for (const r of rows) {
    const g = r.group ?? '(none)';
    const t = out.get(g) || { group: g, requests: 0, errors: 0, cached: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_usd: 0 };
    for (const k of ['requests', 'errors', 'cached', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost_usd']) t[k] += r[k] || 0;
    out.set(g, t);
  }
  return [...out.values()].sort((a, b) => b[key] - a[key]);
}

function weightedLatency(providers) {
  let n = 0;
  let p50 = 0;
  let p95 = 0;
  for (const p of providers) {
    const s = p.stats || {};
    if (s.latency_p50_ms == null || !s.requests) continue;
    n += s.requests;
    p50 += s.latency_p50_ms * s.requests;
    p95 += (s.latency_p95_ms ?? s.latency_p50_ms) * s.requests;
  }
  return n ? { p50: p50 / n, p95: p95 / n } : { p50: null, p95: null };
}

function shareBar(share) {
  const fill = h('span');
  fill.style.width = `${Math.round(Math.min(1, share || 0) * 100)}%`;
  return h('div', { class: 'bar', title: pct(share) }, fill);
}

function topTable(rows, total, what) {
  return table(
    [
      { label: what, render: (r) => [h('span', { class: 'mono' }, r.group), r === rows[0] && r.requests > 0 ? h('span', { class: 'badge top' }, 'most used') : null] },
      { label: 'Requests', num: true, render: (r) => num(r.requests) },
      { label: 'Share', render: (r) => shareBar(total ? r.requests / total : 0) },
      { label: 'Tokens', num: true, render: (r) => compact(r.total_tokens) },
      { label: 'Cost', num: true, render: (r) => usd(r.cost_usd) },
    ],
    rows,
    { empty: 'No traffic in this range.' },
  );
}

function breakerOf(p) {
  const b = p.breaker ?? p.stats?.breaker;
  if (b === undefined || b === null) return null;
  const state = typeof b === 'string' ? b : b.state ?? JSON.stringify(b);
  const cls = /open/i.test(state) && !/half/i.test(state) ? 'err' : /half/i.test(state) ? 'warn' : 'ok';
  return h('span', { class: `badge ${cls}`, title: typeof b === 'string' ? undefined : JSON.stringify(b) }, `breaker: ${state}`);
}

// ---------------------------------------------------------------- Overview

// The API gives latency percentiles since start, not per bucket: the overview samples them
// on every refresh while the tab is open, and charts the samples.
const latencySamples = [];

async function overview(main, ctx) {
  let range = sessionStorage.getItem('switchboard.range') || 'day';
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: true });
  const updated = h('span', { class: 'muted', id: 'updated' });
  const body = h('div', { id: 'overview-body' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(
    h('div', { class: 'row between' }, h('h1', {}, 'Overview'), h('div', { class: 'row' }, tabs, h('label', { class: 'inline' }, auto, 'Auto-refresh'), updated)),
    body,
  );
  const drawTabs = () =>
    fill(tabs, 
      ...Object.entries(RANGES).map(([k, r]) =>
        h('button', { type: 'button', class: k === range ? 'active' : '', 'aria-selected': String(k === range), dataset: { range: k }, onclick: () => { range = k; sessionStorage.setItem('switchboard.range', k); drawTabs(); load(); } }, r.label),
      ),
    );
  drawTabs();

  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try {
      const r = RANGES[range];
      const until = now() + 1;
      const since = until - r.secs;
      const q = { since, until, bucket: r.bucket };
      const [usage, byProvider, byModel, providers] = await Promise.all([
        api(`/admin/usage${qs(q)}`),
        api(`/admin/usage${qs({ ...q, group_by: 'provider' })}`),
        api(`/admin/usage${qs({ ...q, group_by: 'model' })}`),
        api('/admin/providers'),
      ]);
      const t = usage.totals;
      const lat = weightedLatency(providers.data);
      const starts = bucketStarts(since, until, r.bucket, usage.data);
      const byStart = new Map(usage.data.map((x) => [x.start, x]));
      const pts = (key) => starts.map((s) => ({ label: bucketLabel(s, r.bucket), value: byStart.get(s)?.[key] || 0, error: key === 'requests' ? byStart.get(s)?.errors || 0 : 0 }));
      if (lat.p50 !== null) {
        latencySamples.push({ at: Date.now(), p50: lat.p50, p95: lat.p95 });
        if (latencySamples.length > 120) latencySamples.shift();
      }
      const errorRate = starts.map((st) => {
        const b = byStart.get(st);
        return { label: bucketLabel(st, r.bucket), value: b?.requests ? b.errors / b.requests : 0, title: `${bucketLabel(st, r.bucket)}: ${pct(b?.requests ? b.errors / b.requests : 0)} of ${num(b?.requests || 0)}` };
      });
      const latencyChart = latencySamples.length
        ? [
          lineChart(
            [{ name: 'p50', values: latencySamples.map((x) => x.p50) }, { name: 'p95', values: latencySamples.map((x) => x.p95) }],
            latencySamples.map((x) => new Date(x.at).toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' })),
            { fmt: (v) => ms(v), title: 'Latency samples', width: chartWidth(main) },
          ),
          legend(['p50', 'p95']),
          h('p', { class: 'muted' }, 'All providers, since the gateway started; sampled by this page on every refresh.'),
        ]
        : h('p', { class: 'empty' }, 'No latency observed yet.');
      const provRows = sumBy(byProvider.data, 'requests');
      const modelRows = sumBy(byModel.data, 'requests');
      fill(body, 
        h('div', { class: 'stats' },
          stat('Requests', num(t.requests), `${num(t.cached)} from cache`, 'stat-requests'),
          stat('Error rate', pct(t.requests ? t.errors / t.requests : 0), `${num(t.errors)} errors`, 'stat-errors'),
          stat('Latency p50', ms(lat.p50), 'since start, all providers', 'stat-p50'),
          stat('Latency p95', ms(lat.p95), 'since start, all providers', 'stat-p95'),
          stat('Tokens', compact(t.total_tokens), `${compact(t.prompt_tokens)} in · ${compact(t.completion_tokens)} out`, 'stat-tokens'),
          stat('Cost', usd(t.cost_usd), r.label.toLowerCase(), 'stat-cost'),
        ),
        h('div', { class: 'grid charts' },
          h('section', { class: 'card' }, h('h2', {}, 'Requests'), barChart(pts('requests'), { fmt: compact, title: 'Requests per bucket', width: chartWidth(main) }), h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'sw-err' }), 'errors'))),
          h('section', { class: 'card' }, h('h2', {}, 'Error rate'), barChart(errorRate, { fmt: (v) => `${Math.round(v * 100)}%`, title: 'Error rate per bucket', width: chartWidth(main), cls: 'err' })),
          h('section', { class: 'card', id: 'latency-chart' }, h('h2', {}, 'Latency'), latencyChart),
          h('section', { class: 'card' }, h('h2', {}, 'Tokens'), barChart(pts('total_tokens'), { fmt: compact, title: 'Tokens per bucket', width: chartWidth(main) })),
          h('section', { class: 'card' }, h('h2', {}, 'Cost'), barChart(pts('cost_usd'), { fmt: usd, title: 'Cost per bucket', width: chartWidth(main) })),
        ),
        h('div', { class: 'grid' },
          h('section', { class: 'card', id: 'top-providers' }, h('h2', {}, 'Providers'), topTable(provRows, t.requests, 'Provider')),
          h('section', { class: 'card', id: 'top-models' }, h('h2', {}, 'Models'), topTable(modelRows, t.requests, 'Model')),
        ),
      );
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      fill(body, errorBox(e));
    } finally {
      busy = false;
    }
  }
  // The timer is set before the first load is awaited: a page left while loading (signing in
  // renders the overview twice) must not keep a timer that outlives it.
  const timer = setInterval(() => {
    if (auto.checked && !document.hidden) load();
  }, 5000);
  ctx.cleanups.push(() => clearInterval(timer));
  await load();
}

// ---------------------------------------------------------------- Providers

async function providersPage(main, ctx) {
  main.append(h('h1', {}, 'Providers'));
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  main.append(body);
  async function load() {
    try {
      const res = await api('/admin/providers');
      const total = res.data.reduce((a, p) => a + (p.stats?.requests || 0), 0);
      const top = [...res.data].sort((a, b) => (b.stats?.requests || 0) - (a.stats?.requests || 0))[0];
      fill(body, 
        ...(res.data.length ? [] : [h('p', { class: 'empty' }, 'No provider is loaded.')]),
        ...res.data.map((p) => {
          const s = p.stats || {};
          const share = total ? (s.requests || 0) / total : 0;
          return h('section', { class: 'card provider', dataset: { provider: p.name } },
            h('div', { class: 'row between' },
              h('h2', {}, p.name, h('span', { class: 'badge' }, p.kind), p === top && s.requests ? h('span', { class: 'badge top' }, 'most used') : null, breakerOf(p),
                s.requests ? h('span', { class: `badge ${s.error_rate > 0.2 ? 'err' : s.error_rate > 0 ? 'warn' : 'ok'}` }, s.error_rate > 0.2 ? 'unhealthy' : s.error_rate > 0 ? 'degraded' : 'healthy') : h('span', { class: 'badge' }, 'no traffic yet')),
              p.base_url ? h('code', { class: 'muted' }, p.base_url) : h('span', { class: 'muted' }, 'built in')),
            h('div', { class: 'stats' },
              stat('Requests', num(s.requests)),
              stat('Error rate', pct(s.error_rate), `${num(s.errors)} errors`),
              stat('Latency p50', ms(s.latency_p50_ms)),
              stat('Latency p95', ms(s.latency_p95_ms)),
              stat('Cache hits', num(s.cache_hits)),
              h('div', { class: 'stat' }, h('div', { class: 'label' }, 'Share of traffic'), h('div', { class: 'value' }, pct(share)), shareBar(share)),
            ),
            table(
              [
                { label: 'Model', render: (m) => h('code', {}, m.id) },
                { label: 'Upstream', class: 'hide-sm', render: (m) => m.upstream },
                { label: 'Input $/M', num: true, render: (m) => (m.pricing ? `$${m.pricing.input}` : '–') },
                { label: 'Output $/M', num: true, render: (m) => (m.pricing ? `$${m.pricing.output}` : '–') },
              ],
              p.models,
              { empty: 'No models.' },
            ),
          );
        }),
        res.skipped?.length
          ? h('section', { class: 'card' }, h('h2', {}, 'Skipped'), table([{ label: 'Provider', key: 'name' }, { label: 'Why', key: 'reason' }], res.skipped))
          : null,
        h('p', { class: 'muted' }, 'Stats are observed since the gateway started.'),
      );
    } catch (e) {
      fill(body, errorBox(e));
    }
  }
  // Set before the first load is awaited, so leaving the page while it loads clears it.
  const timer = setInterval(() => !document.hidden && load(), 10000);
  ctx.cleanups.push(() => clearInterval(timer));
  await load();
}

// ---------------------------------------------------------------- Keys

const splitList = (s) => s.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
function parseTags(s) {
  const tags = {};
  for (const part of splitList(s)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new Error(`A tag must be name=value: "${part}"`);
    tags[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return tags;
}
const tagsText = (tags) => Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(', ');
function toLocalInput(secs) {
  if (!secs) return '';
  const d = new Date(secs * 1000);
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 16);
}
const fromLocalInput = (v) => (v ? Math.floor(new Date(v).getTime() / 1000) : null);

function keyStatus(k) {
  if (k.revoked_at) return h('span', { class: 'badge err' }, 'revoked');
  if (k.expires_at && k.expires_at <= now()) return h('span', { class: 'badge warn' }, 'expired');
  return h('span', { class: 'badge ok' }, 'active');
}

async function keysPage(main) {
  const teamList = [...(await teamNames())];
  const name = h('input', { id: 'key-name', required: true, placeholder: 'ci-bot', maxlength: '100' });
  const role = h('select', { id: 'key-role' }, h('option', { value: 'user' }, 'user'), h('option', { value: 'admin' }, 'admin'));
  const models = h('input', { id: 'key-models', placeholder: 'all, or mock/echo, …' });
  const tags = h('input', { id: 'key-tags', placeholder: 'team=search, env=prod' });
  const expires = h('input', { id: 'key-expires', type: 'datetime-local' });
  const team = teamSelect('key-team', teamList, '');
  const limits = limitFields('key');
  const formError = h('p', { class: 'error', role: 'alert' });
  const showRevoked = h('input', { type: 'checkbox', id: 'show-revoked' });
  const list = h('div', { id: 'keys-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const form = h('form', { class: 'card', id: 'key-create' },
    h('h2', {}, 'Create a key'),
    h('div', { class: 'row' },
      h('label', { class: 'grow' }, 'Name', name),
      h('label', {}, 'Role', role),
      h('label', { class: 'grow' }, 'Models', models),
      h('label', { class: 'grow' }, 'Tags', tags),
      h('label', {}, 'Expires', expires),
      h('label', {}, 'Team', team),
      h('button', { type: 'submit', id: 'key-create-submit' }, 'Create'),
    ),
    h('details', { id: 'key-limits' }, h('summary', {}, 'Limits and budgets (empty: no limit; the limits of its team apply as well)'), limits.el),
    formError,
  );
  main.append(h('h1', {}, 'Keys'), form, h('section', { class: 'card' }, h('div', { class: 'row between' }, h('h2', {}, 'All keys'), h('label', { class: 'inline' }, showRevoked, 'Show revoked')), list));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.textContent = '';
    try {
      const body = { name: name.value.trim(), role: role.value, models: splitList(models.value), tags: parseTags(tags.value) };
      const exp = fromLocalInput(expires.value);
      if (exp) body.expires_at = exp;
      if (team.value) body.team = team.value;
      const set = limits.read();
      if (Object.keys(set).length) body.limits = set;
      const created = await api('/admin/keys', { method: 'POST', body });
      form.reset();
      await load();
      await showSecret('Key created', created.key, `The secret of "${created.name}" (${created.id}). Copy it now: it cannot be shown again.`);
    } catch (err) {
      formError.textContent = err.message;
    }
  });
  showRevoked.addEventListener('change', () => load());

  async function edit(k) {
    const m = h('input', { id: 'edit-models', value: (k.models || []).join(', ') });
    const t = h('input', { id: 'edit-tags', value: tagsText(k.tags) });
    const x = h('input', { id: 'edit-expires', type: 'datetime-local', value: toLocalInput(k.expires_at) });
    const n = h('input', { id: 'edit-name', value: k.name });
    const tm = teamSelect('edit-team', teamList, k.team || '');
    const lim = limitFields('edit-key', k.limits);
    const err = h('p', { class: 'error' });
    for (;;) {
      const ok = await modal(`Edit ${k.name}`, h('div', { class: 'row' },
        h('label', { class: 'grow' }, 'Name', n),
        h('label', { class: 'grow' }, 'Models (empty: all)', m),
        h('label', { class: 'grow' }, 'Tags (name=value, comma-separated)', t),
        h('label', { class: 'grow' }, 'Expires (empty: never)', x),
        h('label', { class: 'grow' }, 'Team', tm),
        h('h3', {}, 'Limits and budgets (empty: no limit)'),
        lim.el,
        err,
      ), [{ label: 'Cancel', value: false, class: 'ghost' }, { label: 'Save', value: true, id: 'edit-save' }]);
      if (!ok) return;
      try {
        await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'PATCH', body: { name: n.value.trim(), models: splitList(m.value), tags: parseTags(t.value), expires_at: fromLocalInput(x.value), team: tm.value || null, limits: lim.read() } });
        toast(`Saved ${n.value.trim()}`);
        return load();
      } catch (e) {
        err.textContent = e.message;
      }
    }
  }
  async function rotate(k) {
    if (!(await confirmAction('Rotate key?', `"${k.name}" gets a new secret; the current one stops working at once.`, 'Rotate'))) return;
    try {
      const r = await api(`/admin/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST' });
      await load();
      await showSecret('Key rotated', r.key, `The new secret of "${r.name}". Copy it now: it cannot be shown again.`);
    } catch (e) {
      toast(e.message);
    }
  }
  async function revoke(k) {
    if (!(await confirmAction('Revoke key?', `"${k.name}" (${k.id}) stops working at once. This cannot be undone.`, 'Revoke'))) return;
    try {
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      toast(`Revoked ${k.name}`);
      await load();
    } catch (e) {
      toast(e.message);
    }
  }

  async function load() {
    try {
      const res = await api('/admin/keys');
      const teamsById = new Map(teamList);
      const keys = res.data.filter((k) => showRevoked.checked || !k.revoked_at).sort((a, b) => b.created_at - a.created_at);
      fill(list, table(
        [
          { label: 'Name', render: (k) => [h('strong', {}, k.name), h('div', { class: 'muted mono' }, k.id)] },
          { label: 'Status', render: keyStatus },
          { label: 'Role', key: 'role' },
          { label: 'Secret', class: 'hide-sm', render: (k) => h('code', {}, k.masked) },
          { label: 'Models', render: (k) => (k.models?.length ? h('div', { class: 'pill-list' }, k.models.map((x) => h('code', {}, x))) : h('span', { class: 'muted' }, 'all')) },
          { label: 'Tags', class: 'hide-sm', render: (k) => tagsText(k.tags) || '–' },
          { label: 'Team', render: (k) => (k.team ? h('span', { class: 'key-team', title: k.team }, teamsById.get(k.team) || k.team) : h('span', { class: 'muted' }, 'none')) },
          { label: 'Limits', class: 'hide-sm', render: (k) => limitsWithUse(k.limits, k.limit_use) },
          { label: 'Expires', render: (k) => (k.expires_at ? dateTime(k.expires_at) : 'never') },
          { label: 'Last used', class: 'hide-sm', render: (k) => dateTimeMs(k.usage?.last_used_ms) },
          { label: 'Requests', num: true, render: (k) => num(k.usage?.requests) },
          { label: 'Cost', num: true, render: (k) => usd(k.usage?.cost_usd) },
          {
            label: '',
            render: (k) => (k.revoked_at ? null : h('div', { class: 'row' },
              h('button', { type: 'button', class: 'ghost small', dataset: { action: 'edit', id: k.id }, onclick: () => edit(k) }, 'Edit'),
              h('button', { type: 'button', class: 'ghost small', dataset: { action: 'rotate', id: k.id }, onclick: () => rotate(k) }, 'Rotate'),
              h('button', { type: 'button', class: 'danger small', dataset: { action: 'revoke', id: k.id }, onclick: () => revoke(k) }, 'Revoke'),
            )),
          },
        ],
        keys,
        { empty: 'No keys.', rowClass: (k) => `key-row key-${k.id}` },
      ));
    } catch (e) {
      fill(list, errorBox(e));
    }
  }
  await load();
}

// ---------------------------------------------------------------- Usage

async function keyNames() {
  try {
    const res = await api('/admin/keys');
    return new Map(res.data.map((k) => [k.id, k.name]));
  } catch {
    return new Map();
  }
}

async function usagePage(main) {
  const preset = h('select', { id: 'usage-range' }, [['1', 'Last 24 hours'], ['7', 'Last 7 days'], ['30', 'Last 30 days'], ['custom', 'Custom']].map(([v, l]) => h('option', { value: v }, l)));
  const since = h('input', { type: 'datetime-local', id: 'usage-since' });
  const until = h('input', { type: 'datetime-local', id: 'usage-until' });
  const bucket = h('select', { id: 'usage-bucket' }, h('option', { value: 'hour' }, 'hour'), h('option', { value: 'day' }, 'day'));
  const group = h('select', { id: 'usage-group' }, ['key', 'team', 'provider', 'model', 'variant', 'tag', 'none'].map((g) => h('option', { value: g }, g === 'none' ? 'nothing' : g)));
  const tagName = h('input', { id: 'usage-tag', placeholder: 'tag name', hidden: true });
  const metric = h('select', { id: 'usage-metric' }, [['requests', 'requests'], ['total_tokens', 'tokens'], ['cost_usd', 'cost']].map(([v, l]) => h('option', { value: v }, l)));
  const exportBtn = h('button', { type: 'button', class: 'ghost', id: 'usage-export', disabled: true }, 'Export CSV');
  const out = h('div', { id: 'usage-body' });
  const customs = [h('label', {}, 'Since', since), h('label', {}, 'Until', until)];
  customs.forEach((c) => (c.hidden = true));
  const form = h('form', { class: 'card row' },
    h('label', {}, 'Range', preset), ...customs, h('label', {}, 'Bucket', bucket), h('label', {}, 'Group by', group), h('label', {}, 'Tag', tagName),
    h('label', {}, 'Chart', metric), h('button', { type: 'submit', id: 'usage-load' }, 'Show'), exportBtn);
  tagName.parentElement.hidden = true;
  main.append(h('h1', {}, 'Usage'), form, out);

  preset.addEventListener('change', () => {
    customs.forEach((c) => (c.hidden = preset.value !== 'custom'));
    if (preset.value === 'custom' && !since.value) {
      since.value = toLocalInput(now() - 7 * DAY);
      until.value = toLocalInput(now() + 60);
    }
    bucket.value = preset.value === '1' ? 'hour' : 'day';
  });
  group.addEventListener('change', () => {
    tagName.parentElement.hidden = group.value !== 'tag';
    tagName.hidden = group.value !== 'tag';
  });

  let last = null;
  async function load() {
    fill(out, h('p', { class: 'muted' }, 'Loading…'));
    exportBtn.disabled = true;
    try {
      let s;
      let u;
      if (preset.value === 'custom') {
        s = fromLocalInput(since.value);
        u = fromLocalInput(until.value);
        if (!s || !u) throw new Error('Choose both dates.');
      } else {
        u = now() + 1;
        s = u - Number(preset.value) * DAY;
      }
      let g = group.value;
      if (g === 'tag') {
        if (!tagName.value.trim()) throw new Error('Name the tag to group by.');
        g = `tag:${tagName.value.trim()}`;
      }
      const [res, names, teams] = await Promise.all([api(`/admin/usage${qs({ since: s, until: u, bucket: bucket.value, group_by: g === 'none' ? '' : g })}`), keyNames(), teamNames()]);
      const named = g === 'key' ? names : g === 'team' ? teams : null;
      const label = (grp) => (named && grp ? named.get(grp) || grp : grp ?? (g === 'none' ? 'all' : '(none)'));
      const rows = res.data.map((r) => ({ ...r, group: label(r.group) }));
      last = { res, rows, g };
      const m = metric.value;
      const groups = sumBy(rows, m);
      const shown = groups.slice(0, 6).map((x) => x.group);
      const starts = bucketStarts(res.since, res.until, res.bucket, rows);
      const series = shown.map((name) => ({ name, values: starts.map((st) => rows.filter((r) => r.start === st && r.group === name).reduce((a, r) => a + (r[m] || 0), 0)) }));
      const fmt = m === 'cost_usd' ? usd : compact;
      const total = res.totals;
      fill(out, 
        h('div', { class: 'stats' },
          stat('Requests', num(total.requests)), stat('Errors', num(total.errors)), stat('Cached', num(total.cached)),
          stat('Tokens', compact(total.total_tokens)), stat('Cost', usd(total.cost_usd))),
        h('section', { class: 'card' }, h('h2', {}, `${metric.selectedOptions[0].textContent} per ${res.bucket}`),
          lineChart(series, starts.map((st) => bucketLabel(st, res.bucket)), { fmt, title: 'Usage over time', width: chartWidth(main, true), height: 260 }), legend(shown),
          groups.length > 6 ? h('p', { class: 'muted' }, `The chart shows the top 6 of ${groups.length} groups.`) : null),
        h('section', { class: 'card' }, h('h2', {}, g === 'none' ? 'Totals' : `By ${g}`), table(
          [
            { label: g === 'none' ? '' : g, render: (r) => h('span', { class: 'mono' }, r.group) },
            { label: 'Requests', num: true, render: (r) => num(r.requests) },
            { label: 'Errors', num: true, render: (r) => num(r.errors) },
            { label: 'Cached', num: true, render: (r) => num(r.cached) },
            { label: 'Prompt', num: true, render: (r) => num(r.prompt_tokens) },
            { label: 'Completion', num: true, render: (r) => num(r.completion_tokens) },
            { label: 'Total tokens', num: true, render: (r) => num(r.total_tokens) },
            { label: 'Cost', num: true, render: (r) => usd(r.cost_usd) },
            { label: 'Share', render: (r) => shareBar(total.requests ? r.requests / total.requests : 0) },
          ],
          groups,
          { empty: 'No usage in this range.' },
        )),
      );
      exportBtn.disabled = false;
    } catch (e) {
      fill(out, errorBox(e));
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load();
  });
  metric.addEventListener('change', () => load());
  exportBtn.addEventListener('click', () => {
    if (!last) return;
    const header = ['bucket_start', 'bucket_start_iso', last.g === 'none' ? 'group' : last.g, 'requests', 'errors', 'cached', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost_usd'];
    const lines = [header, ...last.rows.map((r) => [r.start, new Date(r.start * 1000).toISOString(), r.group ?? '', r.requests, r.errors, r.cached, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.cost_usd])];
    const url = URL.createObjectURL(new Blob([csv(lines)], { type: 'text/csv' }));
    const a = h('a', { href: url, download: `switchboard-usage-${last.g}-${new Date().toISOString().slice(0, 10)}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  await load();
}

// ---------------------------------------------------------------- Logs

function statusBadge(s) {
  return h('span', { class: `badge ${s >= 500 ? 'err' : s >= 400 ? 'warn' : 'ok'}` }, String(s));
}

async function showLog(id, names, teams) {
  let e;
  try {
    e = await api(`/admin/logs/${encodeURIComponent(id)}`);
  } catch (err) {
    return toast(err.message);
  }
  const obj = (o) => (o && Object.keys(o).length ? Object.entries(o).map(([k, v]) => `${k}=${v}`).join(', ') : '–');
  await modal(`Request ${e.request_id}`, h('div', { id: 'log-detail' },
    kv([
      e.client_request_id ? ['Client request id', e.client_request_id] : null,
      ['Time', dateTimeMs(e.at_ms)],
      ['Status', statusBadge(e.status)],
      ['Key', `${names.get(e.key_id) || ''} ${e.key_id}`.trim()],
      e.team ? ['Team', `${teams.get(e.team) || ''} ${e.team}`.trim()] : null,
      ['Endpoint', e.endpoint],
      e.format ? ['Client API', e.format] : null,
      ['Requested model', e.requested_model],
      ['Served by', e.provider ? `${e.provider}/${e.model ?? ''}` : '–'],
      ['Latency', ms(e.latency_ms)],
      ['Attempts', num(e.attempts)],
      ['Stream', e.stream ? 'yes' : 'no'],
      ['Cache', e.cached ? 'hit' : 'no'],
      ['Variants', obj(e.variants)],
      ['Tags', obj(e.tags)],
      ['Tokens', `${num(e.prompt_tokens)} prompt + ${num(e.completion_tokens)} completion = ${num(e.total_tokens)}`],
      ['Cost', usd(e.cost_usd)],
      e.error ? ['Error', h('span', { class: 'error' }, e.error)] : null,
    ]),
    e.request_body !== undefined ? [h('h3', {}, 'Request body'), h('pre', {}, pretty(e.request_body))] : h('p', { class: 'muted' }, 'Bodies are not logged (start the gateway with --log-bodies to keep them).'),
    e.response_body !== undefined ? [h('h3', {}, 'Response body'), h('pre', {}, pretty(e.response_body))] : null,
  ), [{ label: 'Close', value: true, id: 'log-close' }]);
}

async function logsPage(main) {
  const [names, teams] = await Promise.all([keyNames(), teamNames()]);
  const key = h('select', { id: 'logs-key' }, h('option', { value: '' }, 'any key'), [...names].map(([id, n]) => h('option', { value: id }, n)));
  const team = h('select', { id: 'logs-team' }, h('option', { value: '' }, 'any team'), [...teams].map(([id, n]) => h('option', { value: id }, n)));
  const model = h('input', { id: 'logs-model', placeholder: 'any model' });
  const provider = h('input', { id: 'logs-provider', placeholder: 'any provider' });
  const status = h('select', { id: 'logs-status' }, ['', '2xx', '4xx', '5xx', '429'].map((s) => h('option', { value: s }, s || 'any status')));
  const since = h('select', { id: 'logs-since' }, [['', 'any time'], [String(HOUR), 'last hour'], [String(DAY), 'last day'], [String(7 * DAY), 'last week']].map(([v, l]) => h('option', { value: v }, l)));
  const out = h('div', { id: 'logs-body' });
  const prev = h('button', { type: 'button', class: 'ghost', id: 'logs-prev', disabled: true }, '← Newer');
  const next = h('button', { type: 'button', class: 'ghost', id: 'logs-next', disabled: true }, 'Older →');
  const pageNo = h('span', { class: 'muted' });
  const form = h('form', { class: 'card row' },
    h('label', {}, 'Key', key), h('label', {}, 'Team', team), h('label', { class: 'grow' }, 'Model', model), h('label', { class: 'grow' }, 'Provider', provider),
    h('label', {}, 'Status', status), h('label', {}, 'Since', since), h('button', { type: 'submit', id: 'logs-apply' }, 'Filter'));
  main.append(h('h1', {}, 'Logs'), form, h('section', { class: 'card' }, out, h('div', { class: 'row between' }, prev, pageNo, next)));

  let cursors = [null];
  let page = 0;
  let nextCursor = null;
  async function load() {
    try {
      const res = await api(`/admin/logs${qs({
        key_id: key.value, team: team.value, model: model.value.trim(), provider: provider.value.trim(), status: status.value,
        since: since.value ? now() - Number(since.value) : '', limit: 25, cursor: cursors[page],
      })}`);
      nextCursor = res.next_cursor || null;
      fill(out, table(
        [
          { label: 'Time', render: (e) => shortTime(e.at_ms) },
          { label: 'Status', render: (e) => statusBadge(e.status) },
          { label: 'Key', class: 'hide-sm', render: (e) => names.get(e.key_id) || e.key_id },
          { label: 'Model', render: (e) => h('code', {}, e.provider ? `${e.provider}/${e.model}` : e.requested_model) },
          { label: 'Latency', num: true, render: (e) => ms(e.latency_ms) },
          { label: 'Tokens', num: true, class: 'hide-sm', render: (e) => num(e.total_tokens) },
          { label: 'Cost', num: true, class: 'hide-sm', render: (e) => usd(e.cost_usd) },
          { label: 'Cache', class: 'hide-sm', render: (e) => (e.cached ? 'hit' : '') },
        ],
        res.data,
        { empty: 'No requests match.', onRow: (e) => showLog(e.request_id, names, teams), rowClass: () => 'log-row' },
      ));
      prev.disabled = page === 0;
      next.disabled = !nextCursor;
      pageNo.textContent = `Page ${page + 1}`;
    } catch (e) {
      fill(out, errorBox(e));
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    cursors = [null];
    page = 0;
    load();
  });
  next.addEventListener('click', () => {
    if (!nextCursor) return;
    cursors[page + 1] = nextCursor;
    page += 1;
    load();
  });
  prev.addEventListener('click', () => {
    if (page === 0) return;
    page -= 1;
    load();
  });
  await load();
}

// ---------------------------------------------------------------- Policies

function outcomeBadge(o) {
  const cls = o === 'applied' ? 'ok' : o === 'unchanged' ? '' : 'err';
  return h('span', { class: `badge ${cls}`, id: 'reload-outcome' }, o.replace('_', ' '));
}

function errorsTable(errors) {
  return table(
    [
      { label: 'File', render: (e) => h('code', {}, e.file) },
      { label: 'Line', num: true, render: (e) => (e.line ? `${e.line}${e.column ? `:${e.column}` : ''}` : '–') },
      { label: 'Field', render: (e) => e.field || '–' },
      { label: 'Message', render: (e) => h('span', { class: 'error' }, e.message) },
    ],
    errors,
    { empty: 'No errors.' },
  );
}

async function policiesPage(main) {
  const status = h('section', { class: 'card', id: 'config-status' }, h('p', { class: 'muted' }, 'Loading…'));
  const scripts = h('section', { class: 'card', id: 'policy-scripts' });
  const reloadBtn = h('button', { type: 'button', id: 'reload' }, 'Reload now');
  main.append(h('div', { class: 'row between' }, h('h1', {}, 'Policies and config'), reloadBtn), status, scripts);
  let editor = null;

  async function loadConfig() {
    try {
      const [cfg, pol] = await Promise.all([api('/admin/config'), api('/admin/policies')]);
      const lr = cfg.last_reload;
      const errors = lr?.errors || [];
      fill(status, 
        h('h2', {}, 'Config'),
        kv([
          ['Version', num(cfg.version)],
          ['Loaded at', dateTime(cfg.loaded_at)],
          ['Providers', cfg.providers.join(', ') || '–'],
          ['Skipped', cfg.skipped.map((s) => s.name).join(', ') || '–'],
          ['Folders', `${cfg.providers_dir} · ${cfg.policies_dir}`],
          ['Last reload', lr ? h('span', {}, outcomeBadge(lr.outcome), ` ${dateTime(lr.at)} · ${lr.trigger} · ${lr.duration_ms} ms`) : 'none since start'],
          ['Settings file', cfg.settings_file || 'none (flags, environment and defaults)'],
          ['Waiting for a restart', (cfg.settings || []).filter((s) => s.restart_pending).map((s) => s.name).join(', ') || '–'],
        ]),
        errors.length ? [h('h3', { class: 'error' }, `The last reload failed: ${errors.length} error(s); the previous config is still serving`), errorsTable(errors)] : null,
      );
      const bad = new Set(errors.map((e) => e.file.split('/').pop()));
      fill(scripts, 
        h('h2', {}, 'Loaded scripts'),
        pol.scripts.length
          ? h('ol', { class: 'mono' }, pol.scripts.map((s) => h('li', {}, h('button', { type: 'button', class: 'link', dataset: { script: s }, onclick: () => editor?.open(s) }, s), bad.has(s) ? h('span', { class: 'badge err' }, 'has errors') : null)))
          : h('p', { class: 'empty' }, 'No policy scripts: requests are routed to the model they name.'),
        h('p', { class: 'muted' }, 'Scripts run in this order on every request. Click one to edit it below.'),
      );
      return pol;
    } catch (e) {
      fill(status, errorBox(e));
      return null;
    }
  }
  reloadBtn.addEventListener('click', async () => {
    reloadBtn.disabled = true;
    try {
      const r = await api('/admin/reload', { method: 'POST' });
      toast(`Reload: ${r.outcome.replace('_', ' ')}`);
    } catch (e) {
      toast(e instanceof ApiError && e.body?.outcome ? `Reload rolled back: ${e.body.errors.length} error(s)` : e.message);
    } finally {
      reloadBtn.disabled = false;
      loadConfig();
    }
  });
  const pol = await loadConfig();
  if (pol) {
    editor = policyEditor({ scripts: [...pol.scripts], writable: pol.writable, onSaved: loadConfig });
    main.append(editor.card);
  }
  main.append(await simulator(editor?.draft));
}

// `draft`: the editor's draft (or none), simulated instead of the saved script when ticked.
async function simulator(draft) {
  const [providers, keys] = await Promise.all([api('/admin/providers').catch(() => ({ data: [] })), api('/admin/keys').catch(() => ({ data: [] }))]);
  const models = providers.data.flatMap((p) => p.models.map((m) => m.id));
  const model = h('select', { id: 'sim-model' }, models.map((m) => h('option', { value: m }, m)), h('option', { value: '__custom' }, 'other…'));
  const message = h('input', { id: 'sim-message', value: 'Hello!' });
  const temperature = h('input', { id: 'sim-temperature', type: 'number', step: '0.1', min: '0', max: '2', placeholder: 'default' });
  const stream = h('input', { type: 'checkbox', id: 'sim-stream' });
  const endpoint = h('select', { id: 'sim-endpoint' }, ['chat/completions', 'completions', 'embeddings'].map((e) => h('option', { value: e }, e)));
  const key = h('select', { id: 'sim-key' }, h('option', { value: '' }, 'a default user key'), keys.data.filter((k) => !k.revoked_at).map((k) => h('option', { value: k.id }, `${k.name} (${k.role})`)));
  const headers = h('textarea', { id: 'sim-headers', rows: '2', placeholder: 'x-team: search' });
  const request = h('textarea', { id: 'sim-request', rows: '9', spellcheck: 'false', class: 'mono' });
  const out = h('div', { id: 'sim-result' });
  const useDraft = h('input', { type: 'checkbox', id: 'sim-draft', checked: true });
  const build = () => {
    const m = model.value === '__custom' ? 'my-model' : model.value;
    const ep = endpoint.value;
    const body = ep === 'embeddings' ? { model: m, input: message.value } : ep === 'completions' ? { model: m, prompt: message.value } : { model: m, messages: [{ role: 'user', content: message.value }] };
    if (temperature.value !== '' && ep !== 'embeddings') body.temperature = Number(temperature.value);
    if (stream.checked && ep !== 'embeddings') body.stream = true;
    request.value = JSON.stringify(body, null, 2);
  };
  build();
  for (const c of [model, message, temperature, stream, endpoint]) c.addEventListener('change', build);
  const form = h('form', { class: 'card', id: 'simulate' },
    h('h2', {}, 'Simulate a request'),
    h('p', { class: 'muted' }, 'Runs the policies on a request without calling a provider or charging a counter.'),
    h('div', { class: 'row' }, h('label', {}, 'Endpoint', endpoint), h('label', {}, 'Model', model), h('label', { class: 'grow' }, 'Message', message), h('label', {}, 'Temperature', temperature), h('label', { class: 'inline' }, stream, 'stream')),
    h('label', {}, 'Request (edit freely; the fields above rebuild it)', request),
    h('div', { class: 'row' }, h('label', { class: 'grow' }, 'As key', key), h('label', { class: 'grow' }, 'Headers (name: value per line)', headers), draft ? h('label', { class: 'inline' }, useDraft, 'Use the draft') : null, h('button', { type: 'submit', id: 'sim-run' }, 'Simulate')),
    out,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    fill(out);
    try {
      let req;
      try {
        req = JSON.parse(request.value);
      } catch (err) {
        throw new Error(`The request is not valid JSON: ${err.message}`);
      }
      const hdrs = {};
      for (const line of headers.value.split('\n')) {
        const i = line.indexOf(':');
        if (i > 0) hdrs[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
      const body = { endpoint: endpoint.value, request: req, headers: hdrs };
      if (key.value) body.key_id = key.value;
      const d = draft && useDraft.checked ? draft() : null;
      if (d) body.draft = d;
      const r = await api('/admin/policies/simulate', { method: 'POST', body });
      const obj = (o) => (o && Object.keys(o).length ? Object.entries(o).map(([k, v]) => `${k}=${v}`).join(', ') : '–');
      const limits = [...(r.limits || []).map((l) => ({ ...l, kind: 'requests' })), ...(r.token_limits || []).map((l) => ({ ...l, kind: 'tokens' }))];
      fill(out, h('div', { class: 'card', id: 'sim-decisions' },
        h('h3', {}, 'Decisions'),
        kv([
          d ? ['Scripts', h('span', { id: 'sim-with-draft' }, `the saved scripts, with the draft of ${d.name}`)] : null,
          ['Outcome', r.error ? h('span', { class: 'badge err' }, 'script error') : r.rejection ? h('span', { class: 'badge err' }, `rejected ${r.rejection.status}`) : limits.some((l) => !l.would_pass) ? h('span', { class: 'badge warn' }, 'over a limit') : h('span', { class: 'badge ok' }, 'would pass')],
          ['Route', r.route.length ? r.route.join(' → ') : 'as requested'],
          ['Targets', r.targets.length ? h('span', { id: 'sim-targets' }, r.targets.join(' → ')) : h('span', { class: 'error' }, r.target_error || 'none')],
          ['Cache', r.cache_ttl ? `on, ${r.cache_ttl} s` : 'off'],
          ['Variants', obj(r.variants)],
          ['Headers', obj(r.headers)],
          ['Tags', obj(r.tags)],
          r.rejection ? ['Rejection', `${r.rejection.status} ${r.rejection.message} (${r.rejection.script})`] : null,
          r.error ? ['Error', h('span', { class: 'error' }, r.error)] : null,
        ]),
        limits.length ? [h('h3', {}, 'Limits'), table([
          { label: 'Limit', key: 'name' }, { label: 'Counts', key: 'kind' },
          { label: 'Current', num: true, render: (l) => num(l.current) }, { label: 'Max', num: true, render: (l) => num(l.max) },
          { label: 'Window', num: true, render: (l) => `${l.window_secs} s` },
          { label: 'Would pass', render: (l) => h('span', { class: `badge ${l.would_pass ? 'ok' : 'err'}` }, l.would_pass ? 'yes' : 'no') },
        ], limits)] : null,
        h('h3', {}, 'Request as it would go upstream'), h('pre', {}, pretty(r.request)),
      ));
      document.getElementById('sim-decisions').scrollIntoView({ block: 'start' });
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  return form;
}

// ---------------------------------------------------------------- Playground

async function playground(main, ctx) {
  const [models, providers] = await Promise.all([api('/v1/models').catch(() => ({ data: [] })), api('/admin/providers').catch(() => ({ data: [] }))]);
  const pricing = new Map();
  for (const p of providers.data) for (const m of p.models) if (m.pricing) pricing.set(`${p.name}/${m.name}`, m.pricing).set(`${p.name}/${m.upstream}`, pricing.get(`${p.name}/${m.upstream}`) || m.pricing);
  const model = h('select', { id: 'pg-model' }, models.data.map((m) => h('option', { value: m.id }, m.id)));
  const system = h('textarea', { id: 'pg-system', rows: '2', placeholder: 'optional system prompt' });
  const prompt = h('textarea', { id: 'pg-prompt', rows: '4', required: true }, 'Say hello to the gateway in a few words.');
  const maxTokens = h('input', { id: 'pg-max-tokens', type: 'number', min: '1', placeholder: 'default' });
  const temperature = h('input', { id: 'pg-temperature', type: 'number', step: '0.1', min: '0', max: '2', placeholder: 'default' });
  const send = h('button', { type: 'submit', id: 'pg-send' }, 'Send');
  const stop = h('button', { type: 'button', class: 'ghost', id: 'pg-stop', disabled: true }, 'Stop');
  const output = h('div', { class: 'output', id: 'pg-output', 'aria-live': 'polite' });
  const meta = h('div', { id: 'pg-meta' });
  const form = h('form', { class: 'card', id: 'playground' },
    h('div', { class: 'row' }, h('label', { class: 'grow' }, 'Model', model), h('label', {}, 'Max tokens', maxTokens), h('label', {}, 'Temperature', temperature)),
    h('label', {}, 'System', system), h('label', {}, 'Message', prompt),
    h('div', { class: 'row end' }, stop, send),
  );
  main.append(h('h1', {}, 'Playground'), form, h('section', { class: 'card' }, h('h2', {}, 'Reply'), output, meta));
  if (!models.data.length) output.textContent = 'No model is available.';
  let controller = null;
  ctx.cleanups.push(() => controller?.abort());
  stop.addEventListener('click', () => controller?.abort());

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    output.textContent = '';
    output.classList.remove('error');
    const messages = [];
    if (system.value.trim()) messages.push({ role: 'system', content: system.value });
    messages.push({ role: 'user', content: prompt.value });
    const body = { model: model.value, messages, stream: true, stream_options: { include_usage: true } };
    if (maxTokens.value) body.max_tokens = Number(maxTokens.value);
    if (temperature.value !== '') body.temperature = Number(temperature.value);
    const started = performance.now();
    let first = null;
    let usage = null;
    let info = { status: '…' };
    const render = (done) => {
      const price = pricing.get(`${info.provider}/${info.model}`) || pricing.get(model.value);
      const cost = usage && price ? (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6 : null;
      fill(meta, kv([
        ['Status', h('span', { id: 'pg-status' }, String(info.status))],
        ['Provider', h('span', { id: 'pg-provider' }, info.provider ? `${info.provider}${info.model ? ` (${info.model})` : ''}` : '–')],
        ['First token', first === null ? '–' : ms(first - started)],
        ['Latency', h('span', { id: 'pg-latency' }, done ? ms(performance.now() - started) : 'streaming…')],
        ['Tokens', h('span', { id: 'pg-tokens' }, usage ? `${num(usage.prompt_tokens)} prompt + ${num(usage.completion_tokens)} completion = ${num(usage.total_tokens)}` : '–')],
        ['Cost', h('span', { id: 'pg-cost' }, cost === null ? (usage ? 'no pricing for this model' : '–') : usd(cost))],
        info.requestId ? ['Request id', h('code', {}, info.requestId)] : null,
      ]));
    };
    render(false);
    try {
      const res = await api('/v1/chat/completions', { method: 'POST', body, raw: true, signal: controller.signal });
      info = { status: res.status, provider: res.headers.get('x-switchboard-provider'), model: res.headers.get('x-switchboard-model'), requestId: res.headers.get('x-request-id') };
      if (!res.ok) {
        const text = await res.text();
        let msg = text;
        try {
          msg = JSON.parse(text).error.message;
        } catch {
          /* keep the text */
        }
        throw new Error(msg);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let finished = false;
      while (!finished) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const event = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (!data) continue;
          if (data === '[DONE]') {
            finished = true;
            break;
          }
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || 'the stream ended with an error');
          if (chunk.usage) usage = chunk.usage;
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) {
            if (first === null) first = performance.now();
            output.append(delta);
          }
        }
        render(false);
      }
      if (!finished) throw new Error('The stream ended without [DONE]: the reply may be incomplete.');
      output.dataset.done = 'true';
    } catch (err) {
      if (err.name === 'AbortError') {
        output.append(' [stopped]');
      } else {
        output.append(h('div', { class: 'error' }, err.message));
      }
    } finally {
      render(true);
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });
}

export const pages = {
  overview,
  providers: providersPage,
  keys: keysPage,
  teams: teamsPage,
  usage: usagePage,
  logs: logsPage,
  policies: policiesPage,
  batches: batchesPage,
  playground,
};
