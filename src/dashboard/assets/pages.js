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
  table, stat, kv, errorBox, pretty, fill, duration,
} from './ui.js';
import { t, locale } from './i18n.js';
import { keepState } from './forms.js';
import { costDialog } from './costs.js';
import { latencyByStart } from './latency.js';

const now = () => Math.floor(Date.now() / 1000);

// Today: the time; otherwise the date and time, short.
function shortTime(msecs) {
  const d = new Date(msecs);
  return d.toDateString() === new Date().toDateString()
    ? d.toLocaleTimeString(locale())
    : d.toLocaleString(locale(), { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}
// API values shown as words (keys literal, so tests/dashboard/i18n.test.mjs sees them).
const WORDS = () => ({
  hour: t('hour'), day: t('day'), closed: t('closed'), open: t('open'), half_open: t('half open'),
  applied: t('applied'), unchanged: t('unchanged'), rolled_back: t('rolled back'), user: t('user'), admin: t('admin'),
});
const word = (w) => WORDS()[w] ?? w;
const GROUP_LABELS = () => ({ key: t('key'), team: t('team'), provider: t('provider'), model: t('model'), variant: t('variant'), tag: t('tag'), none: t('nothing') });
const groupLabel = (g) => (g.startsWith('tag:') ? t('tag {name}', { name: g.slice(4) }) : GROUP_LABELS()[g] ?? g);

const HOUR = 3600;
const DAY = 86400;

const RANGES = {
  hour: { label: () => t('Last hour'), secs: HOUR, bucket: 'hour' },
  day: { label: () => t('Last day'), secs: DAY, bucket: 'hour' },
  week: { label: () => t('Last week'), secs: 7 * DAY, bucket: 'day' },
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
    ? d.toLocaleDateString(locale(), { month: 'short', day: 'numeric' })
    : d.toLocaleTimeString(locale(), { hour: 'numeric' });
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
    const acc = out.get(g) || { group: g, requests: 0, errors: 0, cached: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_usd: 0 };
    for (const k of ['requests', 'errors', 'cached', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost_usd']) acc[k] += r[k] || 0;
    out.set(g, acc);
  }
  return [...out.values()].sort((a, b) => b[key] - a[key]);
}

function shareBar(share) {
  const fill = h('span');
  fill.style.width = `${Math.round(Math.min(1, share || 0) * 100)}%`;
  return h('div', { class: 'bar', title: pct(share) }, fill);
}

function topTable(rows, total, what) {
  return table(
    [
      { label: what, render: (r) => [h('span', { class: 'mono' }, r.group), r === rows[0] && r.requests > 0 ? h('span', { class: 'badge top' }, t('most used')) : null] },
      { label: t('Requests'), num: true, render: (r) => num(r.requests) },
      { label: t('Share'), render: (r) => shareBar(total ? r.requests / total : 0) },
      { label: t('Tokens'), num: true, render: (r) => compact(r.total_tokens) },
      { label: t('Cost'), num: true, render: (r) => usd(r.cost_usd) },
    ],
    rows,
    { empty: t('No traffic in this range.') },
  );
}

function breakerOf(p) {
  const b = p.breaker ?? p.stats?.breaker;
  if (b === undefined || b === null) return null;
  const state = typeof b === 'string' ? b : b.state ?? JSON.stringify(b);
  const cls = /open/i.test(state) && !/half/i.test(state) ? 'err' : /half/i.test(state) ? 'warn' : 'ok';
  return h('span', { class: `badge ${cls}`, title: typeof b === 'string' ? undefined : JSON.stringify(b) }, t('breaker: {state}', { state: word(state) }));
}

// ---------------------------------------------------------------- Overview

// The status panel: `GET /admin/status` as a list of facts, problems marked.
function statusPanel(st) {
  const badge = (cls, text) => h('span', { class: `badge ${cls}` }, text);
  const storeHealth = { ok: t('healthy'), unavailable: t('unavailable'), unwritable: t('cannot write') }[st.store.health] ?? st.store.health;
  const lr = st.config.last_reload;
  const names = (list) => (list.length ? list.join(', ') : '–');
  return h('section', { class: 'card', id: 'status-panel', 'aria-labelledby': 'status-title' },
    h('h2', { id: 'status-title' }, t('Status')),
    h('div', { class: 'status-grid' },
      kv([
        [t('Version'), h('span', { id: 'status-version' }, `${st.version} (${st.build.profile}, ${st.build.target})`)],
        [t('Uptime'), h('span', { id: 'status-uptime' }, duration(st.uptime_secs))],
        [t('Store'), h('span', { id: 'status-store' }, st.store.backend, badge(st.store.health === 'ok' ? 'ok' : 'err', storeHealth))],
        st.store.error ? [t('Store error'), h('span', { class: 'error' }, st.store.error)] : null,
        [t('Requests in flight'), h('span', { id: 'status-in-flight' }, num(st.requests_in_flight))],
      ]),
      kv([
        [t('Config version'), h('span', { id: 'status-config' }, num(st.config.version))],
        [t('Loaded at'), dateTime(st.config.loaded_at)],
        [t('Last reload'), h('span', { id: 'status-reload' }, lr ? [outcomeBadge(lr.outcome), ` ${dateTime(lr.at)}`] : t('none since start'))],
        [t('Serving'), h('span', { id: 'status-serving' }, badge(st.providers.serving.length ? 'ok' : 'err', num(st.providers.serving.length)), ` ${names(st.providers.serving)}`)],
        [t('Skipped'), h('span', { id: 'status-skipped' }, badge(st.providers.skipped.length ? 'warn' : '', num(st.providers.skipped.length)), ` ${names(st.providers.skipped)}`)],
        [t('Open breaker'), h('span', { id: 'status-open' }, badge(st.providers.open_breaker.length ? 'err' : '', num(st.providers.open_breaker.length)), ` ${names(st.providers.open_breaker)}`)],
      ]),
    ),
  );
}

// Latency over the range from the roll-ups' histograms: p50 and p95 per bucket, and time to
// first token when streams were served. Buckets without served requests are gaps at 0.
function latencyChart(main, rows, starts, bucket) {
  const byStart = latencyByStart(rows);
  const values = (k) => starts.map((st) => byStart.get(st)?.[k] ?? 0);
  if (!starts.some((st) => byStart.get(st)?.p50 != null)) return h('p', { class: 'empty' }, t('No latency in this range.'));
  const withTtft = starts.some((st) => byStart.get(st)?.ttft50 != null);
  const series = [{ name: 'p50', values: values('p50') }, { name: 'p95', values: values('p95') }];
  if (withTtft) series.push({ name: t('first token p50'), values: values('ttft50') }, { name: t('first token p95'), values: values('ttft95') });
  return [
    lineChart(series, starts.map((st) => bucketLabel(st, bucket)), { fmt: ms, title: t('Latency per bucket'), width: chartWidth(main, rows.length > 30) }),
    legend(series.map((x) => x.name)),
  ];
}

async function overview(main, ctx) {
  let range = sessionStorage.getItem('switchboard.range') || 'day';
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: true });
  const updated = h('span', { class: 'muted', id: 'updated' });
  const body = h('div', { id: 'overview-body' }, h('p', { class: 'muted' }, t('Loading…')));
  main.append(
    h('div', { class: 'row between' }, h('h1', {}, t('Overview')), h('div', { class: 'row' }, tabs, h('label', { class: 'inline' }, auto, t('Auto-refresh')), updated)),
    body,
  );
  const drawTabs = () =>
    fill(tabs, 
      ...Object.entries(RANGES).map(([k, r]) =>
        h('button', { type: 'button', role: 'tab', class: k === range ? 'active' : '', 'aria-selected': String(k === range), dataset: { range: k }, onclick: () => { range = k; sessionStorage.setItem('switchboard.range', k); drawTabs(); load(); } }, r.label()),
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
      const [status, usage, byProvider, byModel] = await Promise.all([
        api('/admin/status'),
        api(`/admin/usage${qs(q)}`),
        api(`/admin/usage${qs({ ...q, group_by: 'provider' })}`),
        api(`/admin/usage${qs({ ...q, group_by: 'model' })}`),
      ]);
      const tot = usage.totals;
      const lat = { p50: tot.latency_p50_ms, p95: tot.latency_p95_ms };
      const starts = bucketStarts(since, until, r.bucket, usage.data);
      const byStart = new Map(usage.data.map((x) => [x.start, x]));
      const pts = (key) => starts.map((s) => ({ label: bucketLabel(s, r.bucket), value: byStart.get(s)?.[key] || 0, error: key === 'requests' ? byStart.get(s)?.errors || 0 : 0 }));
      const errorRate = starts.map((st) => {
        const b = byStart.get(st);
        return { label: bucketLabel(st, r.bucket), value: b?.requests ? b.errors / b.requests : 0, title: t('{label}: {rate} of {n}', { label: bucketLabel(st, r.bucket), rate: pct(b?.requests ? b.errors / b.requests : 0), n: num(b?.requests || 0) }) };
      });
      const provRows = sumBy(byProvider.data, 'requests');
      const modelRows = sumBy(byModel.data, 'requests');
      fill(body, 
        statusPanel(status),
        h('div', { class: 'stats' },
          stat(t('Requests'), num(tot.requests), t('{n} from cache', { n: num(tot.cached) }), 'stat-requests'),
          stat(t('Error rate'), pct(tot.requests ? tot.errors / tot.requests : 0), t('{n} errors', { n: num(tot.errors) }), 'stat-errors'),
          stat(t('Latency p50'), ms(lat.p50), t('{range}, all providers', { range: r.label() }), 'stat-p50'),
          stat(t('Latency p95'), ms(lat.p95), t('{range}, all providers', { range: r.label() }), 'stat-p95'),
          stat(t('Tokens'), compact(tot.total_tokens), t('{in} in · {out} out', { in: compact(tot.prompt_tokens), out: compact(tot.completion_tokens) }), 'stat-tokens'),
          stat(t('Cost'), usd(tot.cost_usd), r.label(), 'stat-cost'),
        ),
        h('div', { class: 'grid charts' },
          h('section', { class: 'card' }, h('h2', {}, t('Requests')), barChart(pts('requests'), { fmt: compact, title: t('Requests per bucket'), width: chartWidth(main) }), h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'sw-err' }), t('errors')))),
          h('section', { class: 'card' }, h('h2', {}, t('Error rate')), barChart(errorRate, { fmt: (v) => `${Math.round(v * 100)}%`, title: t('Error rate per bucket'), width: chartWidth(main), cls: 'err' })),
          h('section', { class: 'card', id: 'latency-chart' }, h('h2', {}, t('Latency')), latencyChart(main, usage.data, starts, r.bucket)),
          h('section', { class: 'card' }, h('h2', {}, t('Tokens')), barChart(pts('total_tokens'), { fmt: compact, title: t('Tokens per bucket'), width: chartWidth(main) })),
          h('section', { class: 'card' }, h('h2', {}, t('Cost')), barChart(pts('cost_usd'), { fmt: usd, title: t('Cost per bucket'), width: chartWidth(main) })),
        ),
        h('div', { class: 'grid' },
          h('section', { class: 'card', id: 'top-providers' }, h('h2', {}, t('Providers')), topTable(provRows, tot.requests, t('Provider'))),
          h('section', { class: 'card', id: 'top-models' }, h('h2', {}, t('Models')), topTable(modelRows, tot.requests, t('Model'))),
        ),
      );
      updated.textContent = t('Updated {time}', { time: new Date().toLocaleTimeString(locale()) });
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

// Recent use from the hourly roll-ups: "active" when a provider served any request in the
// current or the previous hour's row (the last 60 to 120 minutes), "hot" for the one that
// served the most of them.
function recentUse(rows, since) {
  const recent = new Map();
  for (const r of rows) if (r.group && r.start + HOUR > since) recent.set(r.group, (recent.get(r.group) || 0) + r.requests);
  let hot = null;
  for (const [name, n] of recent) if (n > 0 && (hot === null || n > recent.get(hot))) hot = name;
  return { recent, hot };
}

async function providersPage(main, ctx) {
  main.append(h('h1', {}, t('Providers')));
  const body = h('div', {}, h('p', { class: 'muted' }, t('Loading…')));
  main.append(body);
  async function load() {
    try {
      const until = now() + 1;
      const since = until - DAY;
      const [res, day] = await Promise.all([
        api('/admin/providers'),
        api(`/admin/usage${qs({ since, until, bucket: 'hour', group_by: 'provider' })}`),
      ]);
      const dayRows = new Map();
      for (const r of day.data) if (r.group) dayRows.set(r.group, [...(dayRows.get(r.group) || []), r]);
      const dayTotal = (name) => (dayRows.get(name) || []).reduce((a, r) => a + r.requests, 0);
      const { recent, hot } = recentUse(day.data, until - HOUR);
      const total = res.data.reduce((a, p) => a + (p.stats?.requests || 0), 0);
      const top = [...res.data].sort((a, b) => (b.stats?.requests || 0) - (a.stats?.requests || 0))[0];
      // By traffic: the last day's requests, then those since start, then by name.
      const sorted = [...res.data].sort((a, b) => dayTotal(b.name) - dayTotal(a.name) || (b.stats?.requests || 0) - (a.stats?.requests || 0) || a.name.localeCompare(b.name));
      const starts = bucketStarts(since, until, 'hour', day.data);
      fill(body, 
        ...(res.data.length ? [] : [h('p', { class: 'empty' }, t('No provider is loaded.'))]),
        ...sorted.map((p) => {
          const s = p.stats || {};
          const share = total ? (s.requests || 0) / total : 0;
          const byStart = new Map((dayRows.get(p.name) || []).map((r) => [r.start, r]));
          const pts = starts.map((st) => ({ label: bucketLabel(st, 'hour'), value: byStart.get(st)?.requests || 0, error: byStart.get(st)?.errors || 0 }));
          const latency = starts.map((st) => byStart.get(st)?.latency_p50_ms ?? null);
          return h('section', { class: 'card provider', dataset: { provider: p.name } },
            h('div', { class: 'row between' },
              h('h2', {}, p.name, h('span', { class: 'badge' }, p.kind), p === top && s.requests ? h('span', { class: 'badge top' }, t('most used')) : null,
                p.name === hot ? h('span', { class: 'badge hot', title: t('Most requests in the last hour') }, t('hot')) : null,
                recent.get(p.name) ? h('span', { class: 'badge active', title: t('Served requests in the last hour') }, t('active')) : null,
                breakerOf(p),
                s.requests ? h('span', { class: `badge ${s.error_rate > 0.2 ? 'err' : s.error_rate > 0 ? 'warn' : 'ok'}` }, s.error_rate > 0.2 ? t('unhealthy') : s.error_rate > 0 ? t('degraded') : t('healthy')) : h('span', { class: 'badge' }, t('no traffic yet'))),
              p.base_url ? h('code', { class: 'muted' }, p.base_url) : h('span', { class: 'muted' }, t('built in'))),
            h('div', { class: 'stats' },
              stat(t('Requests'), num(s.requests)),
              stat(t('Error rate'), pct(s.error_rate), t('{n} errors', { n: num(s.errors) })),
              stat(t('Latency p50'), ms(s.latency_p50_ms)),
              stat(t('Latency p95'), ms(s.latency_p95_ms)),
              stat(t('Cache hits'), num(s.cache_hits)),
              h('div', { class: 'stat' }, h('div', { class: 'label' }, t('Share of traffic')), h('div', { class: 'value' }, pct(share)), shareBar(share)),
            ),
            h('div', { class: 'grid charts provider-charts' },
              h('div', {}, h('h3', {}, t('Requests and errors, last day')), barChart(pts, { fmt: compact, title: t('{name}: requests per hour, last day', { name: p.name }), width: chartWidth(main) })),
              latency.some((v) => v !== null)
                ? h('div', {}, h('h3', {}, t('Latency, last day')), lineChart([{ name: 'p50', values: latency.map((v) => v ?? 0) }, { name: 'p95', values: starts.map((st) => byStart.get(st)?.latency_p95_ms ?? 0) }], pts.map((x) => x.label), { fmt: ms, title: t('{name}: latency per hour, last day', { name: p.name }), width: chartWidth(main) }), legend(['p50', 'p95']))
                : null,
            ),
            table(
              [
                { label: t('Model'), render: (m) => h('code', {}, m.id) },
                { label: t('Upstream'), class: 'hide-sm', render: (m) => m.upstream },
                { label: t('Input $/M'), num: true, render: (m) => (m.pricing ? usd(m.pricing.input) : '–') },
                { label: t('Output $/M'), num: true, render: (m) => (m.pricing ? usd(m.pricing.output) : '–') },
              ],
              p.models,
              { empty: t('No models.') },
            ),
          );
        }),
        res.skipped?.length
          ? h('section', { class: 'card' }, h('h2', {}, t('Skipped')), table([{ label: t('Provider'), key: 'name' }, { label: t('Why'), key: 'reason' }], res.skipped))
          : null,
        h('p', { class: 'muted' }, t('Stats are observed since the gateway started; the charts and badges come from the hourly usage roll-ups.')),
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
    if (i <= 0) throw new Error(t('A tag must be name=value: "{part}"', { part }));
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
  if (k.revoked_at) return h('span', { class: 'badge err' }, t('revoked'));
  if (k.expires_at && k.expires_at <= now()) return h('span', { class: 'badge warn' }, t('expired'));
  return h('span', { class: 'badge ok' }, t('active'));
}

async function keysPage(main) {
  const teamList = [...(await teamNames())];
  const name = h('input', { id: 'key-name', required: true, placeholder: 'ci-bot', maxlength: '100' });
  const role = h('select', { id: 'key-role' }, h('option', { value: 'user' }, t('user')), h('option', { value: 'admin' }, t('admin')));
  const models = h('input', { id: 'key-models', placeholder: t('all, or mock/echo, …') });
  const tags = h('input', { id: 'key-tags', placeholder: 'team=search, env=prod' });
  const expires = h('input', { id: 'key-expires', type: 'datetime-local' });
  const team = teamSelect('key-team', teamList, '');
  const limits = limitFields('key');
  const formError = h('p', { class: 'error', role: 'alert' });
  const showRevoked = h('input', { type: 'checkbox', id: 'show-revoked' });
  const list = h('div', { id: 'keys-list' }, h('p', { class: 'muted' }, t('Loading…')));
  const form = h('form', { class: 'card', id: 'key-create' },
    h('h2', {}, t('Create a key')),
    h('div', { class: 'row' },
      h('label', { class: 'grow' }, t('Name'), name),
      h('label', {}, t('Role'), role),
      h('label', { class: 'grow' }, t('Models'), models),
      h('label', { class: 'grow' }, t('Tags'), tags),
      h('label', {}, t('Expires'), expires),
      h('label', {}, t('Team'), team),
      h('button', { type: 'submit', id: 'key-create-submit' }, t('Create')),
    ),
    h('details', { id: 'key-limits' }, h('summary', {}, t('Limits and budgets (empty: no limit; the limits of its team apply as well)')), limits.el),
    formError,
  );
  main.append(h('h1', {}, t('Keys')), form, h('section', { class: 'card' }, h('div', { class: 'row between' }, h('h2', {}, t('All keys')), h('label', { class: 'inline' }, showRevoked, 'Show revoked')), list));

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
      await showSecret(t('Key created'), created.key, t('The secret of "{name}" ({id}). Copy it now: it cannot be shown again.', { name: created.name, id: created.id }));
    } catch (err) {
      formError.textContent = err.message;
    }
  });
  showRevoked.addEventListener('change', () => load());

  async function edit(k) {
    const m = h('input', { id: 'edit-models', value: (k.models || []).join(', ') });
    const tagsIn = h('input', { id: 'edit-tags', value: tagsText(k.tags) });
    const x = h('input', { id: 'edit-expires', type: 'datetime-local', value: toLocalInput(k.expires_at) });
    const n = h('input', { id: 'edit-name', value: k.name });
    const tm = teamSelect('edit-team', teamList, k.team || '');
    const lim = limitFields('edit-key', k.limits);
    const err = h('p', { class: 'error' });
    for (;;) {
      const ok = await modal(t('Edit {name}', { name: k.name }), h('div', { class: 'row' },
        h('label', { class: 'grow' }, t('Name'), n),
        h('label', { class: 'grow' }, t('Models (empty: all)'), m),
        h('label', { class: 'grow' }, t('Tags (name=value, comma-separated)'), tagsIn),
        h('label', { class: 'grow' }, t('Expires (empty: never)'), x),
        h('label', { class: 'grow' }, t('Team'), tm),
        h('h3', {}, t('Limits and budgets (empty: no limit)')),
        lim.el,
        err,
      ), [{ label: t('Cancel'), value: false, class: 'ghost' }, { label: t('Save'), value: true, id: 'edit-save' }]);
      if (!ok) return;
      try {
        await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'PATCH', body: { name: n.value.trim(), models: splitList(m.value), tags: parseTags(tagsIn.value), expires_at: fromLocalInput(x.value), team: tm.value || null, limits: lim.read() } });
        toast(t('Saved {name}', { name: n.value.trim() }));
        return load();
      } catch (e) {
        err.textContent = e.message;
      }
    }
  }
  async function rotate(k) {
    if (!(await confirmAction(t('Rotate key?'), t('"{name}" gets a new secret; the current one stops working at once.', { name: k.name }), t('Rotate')))) return;
    try {
      const r = await api(`/admin/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST' });
      await load();
      await showSecret(t('Key rotated'), r.key, t('The new secret of "{name}". Copy it now: it cannot be shown again.', { name: r.name }));
    } catch (e) {
      toast(e.message);
    }
  }
  async function revoke(k) {
    if (!(await confirmAction(t('Revoke key?'), t('"{name}" ({id}) stops working at once. This cannot be undone.', { name: k.name, id: k.id }), t('Revoke')))) return;
    try {
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      toast(t('Revoked {name}', { name: k.name }));
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
          { label: t('Name'), render: (k) => [h('strong', {}, k.name), h('div', { class: 'muted mono' }, k.id)] },
          { label: t('Status'), render: keyStatus },
          { label: t('Role'), render: (k) => word(k.role) },
          { label: t('Secret'), class: 'hide-sm', render: (k) => h('code', {}, k.masked) },
          { label: t('Models'), render: (k) => (k.models?.length ? h('div', { class: 'pill-list' }, k.models.map((x) => h('code', {}, x))) : h('span', { class: 'muted' }, t('all'))) },
          { label: t('Tags'), class: 'hide-sm', render: (k) => tagsText(k.tags) || '–' },
          { label: t('Team'), render: (k) => (k.team ? h('span', { class: 'key-team', title: k.team }, teamsById.get(k.team) || k.team) : h('span', { class: 'muted' }, t('none'))) },
          { label: t('Limits'), class: 'hide-sm', render: (k) => limitsWithUse(k.limits, k.limit_use) },
          { label: t('Expires'), render: (k) => (k.expires_at ? dateTime(k.expires_at) : t('never')) },
          { label: t('Last used'), class: 'hide-sm', render: (k) => dateTimeMs(k.usage?.last_used_ms) },
          { label: t('Requests'), num: true, render: (k) => num(k.usage?.requests) },
          { label: t('Cost'), num: true, render: (k) => usd(k.usage?.cost_usd) },
          {
            label: '',
            render: (k) => (k.revoked_at ? null : h('div', { class: 'row' },
              h('button', { type: 'button', class: 'ghost small', dataset: { action: 'edit', id: k.id }, onclick: () => edit(k) }, t('Edit')),
              h('button', { type: 'button', class: 'ghost small', dataset: { action: 'rotate', id: k.id }, onclick: () => rotate(k) }, t('Rotate')),
              h('button', { type: 'button', class: 'danger small', dataset: { action: 'revoke', id: k.id }, onclick: () => revoke(k) }, t('Revoke')),
            )),
          },
        ],
        keys,
        { empty: t('No keys.'), rowClass: (k) => `key-row key-${k.id}` },
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
  const preset = h('select', { id: 'usage-range' }, [['1', t('Last 24 hours')], ['7', t('Last 7 days')], ['30', t('Last 30 days')], ['custom', t('Custom')]].map(([v, l]) => h('option', { value: v }, l)));
  const since = h('input', { type: 'datetime-local', id: 'usage-since' });
  const until = h('input', { type: 'datetime-local', id: 'usage-until' });
  const bucket = h('select', { id: 'usage-bucket' }, h('option', { value: 'hour' }, t('hour')), h('option', { value: 'day' }, t('day')));
  const group = h('select', { id: 'usage-group' }, ['key', 'team', 'provider', 'model', 'variant', 'tag', 'none'].map((g) => h('option', { value: g }, GROUP_LABELS()[g])));
  const tagName = h('input', { id: 'usage-tag', placeholder: t('tag name'), hidden: true });
  const metric = h('select', { id: 'usage-metric' }, [['requests', t('requests')], ['total_tokens', t('tokens')], ['cost_usd', t('cost')]].map(([v, l]) => h('option', { value: v }, l)));
  const exportBtn = h('button', { type: 'button', class: 'ghost', id: 'usage-export', disabled: true }, t('Export CSV'));
  const out = h('div', { id: 'usage-body' });
  const customs = [h('label', {}, t('Since'), since), h('label', {}, t('Until'), until)];
  customs.forEach((c) => (c.hidden = true));
  const form = h('form', { class: 'card row' },
    h('label', {}, t('Range'), preset), ...customs, h('label', {}, t('Bucket'), bucket), h('label', {}, t('Group by'), group), h('label', {}, t('Tag'), tagName),
    h('label', {}, t('Chart'), metric), h('button', { type: 'submit', id: 'usage-load' }, t('Show')), exportBtn);
  tagName.parentElement.hidden = true;
  main.append(h('h1', {}, t('Usage')), form, out);

  preset.addEventListener('change', () => {
    customs.forEach((c) => (c.hidden = preset.value !== 'custom'));
    if (preset.value === 'custom' && !since.value) {
      since.value = toLocalInput(now() - 7 * DAY);
      until.value = toLocalInput(now() + 60);
    }
    bucket.value = preset.value === '1' ? 'hour' : 'day';
  });
  // What shows follows the values, typed or restored.
  const showFields = () => {
    customs.forEach((c) => (c.hidden = preset.value !== 'custom'));
    tagName.parentElement.hidden = group.value !== 'tag';
    tagName.hidden = group.value !== 'tag';
  };
  group.addEventListener('change', showFields);
  form.append(keepState('usage-filter', form, [preset, since, until, bucket, group, tagName, metric], { onReset: () => { showFields(); load(); } }));
  showFields();

  let last = null;
  async function load() {
    fill(out, h('p', { class: 'muted' }, t('Loading…')));
    exportBtn.disabled = true;
    try {
      let s;
      let u;
      if (preset.value === 'custom') {
        s = fromLocalInput(since.value);
        u = fromLocalInput(until.value);
        if (!s || !u) throw new Error(t('Choose both dates.'));
      } else {
        u = now() + 1;
        s = u - Number(preset.value) * DAY;
      }
      let g = group.value;
      if (g === 'tag') {
        if (!tagName.value.trim()) throw new Error(t('Name the tag to group by.'));
        g = `tag:${tagName.value.trim()}`;
      }
      const [res, names, teams] = await Promise.all([api(`/admin/usage${qs({ since: s, until: u, bucket: bucket.value, group_by: g === 'none' ? '' : g })}`), keyNames(), teamNames()]);
      const named = g === 'key' ? names : g === 'team' ? teams : null;
      const label = (grp) => (named && grp ? named.get(grp) || grp : grp ?? (g === 'none' ? t('all') : t('(none)')));
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
          stat(t('Requests'), num(total.requests)), stat(t('Errors'), num(total.errors)), stat(t('Cached'), num(total.cached)),
          stat(t('Tokens'), compact(total.total_tokens)), stat(t('Cost'), usd(total.cost_usd))),
        h('section', { class: 'card' }, h('h2', {}, t('{metric} per {bucket}', { metric: metric.selectedOptions[0].textContent, bucket: word(res.bucket) })),
          lineChart(series, starts.map((st) => bucketLabel(st, res.bucket)), { fmt, title: t('Usage over time'), width: chartWidth(main, true), height: 260 }), legend(shown),
          groups.length > 6 ? h('p', { class: 'muted' }, t('The chart shows the top 6 of {n} groups.', { n: groups.length })) : null),
        h('section', { class: 'card', id: 'usage-latency' }, h('h2', {}, t('Latency per {bucket}, all groups', { bucket: word(res.bucket) })), latencyChart(main, res.data, starts, res.bucket)),
        h('section', { class: 'card', id: 'usage-table' }, h('h2', {}, g === 'none' ? t('Totals') : t('By {group}', { group: groupLabel(g) })), table(
          [
            { label: g === 'none' ? '' : groupLabel(g), render: (r) => h('span', { class: 'mono' }, r.group) },
            { label: t('Requests'), num: true, render: (r) => num(r.requests) },
            { label: t('Errors'), num: true, render: (r) => num(r.errors) },
            { label: t('Cached'), num: true, render: (r) => num(r.cached) },
            { label: t('Prompt'), num: true, render: (r) => num(r.prompt_tokens) },
            { label: t('Completion'), num: true, render: (r) => num(r.completion_tokens) },
            { label: t('Total tokens'), num: true, render: (r) => num(r.total_tokens) },
            { label: t('Cost'), num: true, render: (r) => usd(r.cost_usd) },
            { label: t('Share'), render: (r) => shareBar(total.requests ? r.requests / total.requests : 0) },
          ],
          groups,
          { empty: t('No usage in this range.') },
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
  const choice = await modal(t('Request {id}', { id: e.request_id }), h('div', { id: 'log-detail' },
    kv([
      e.client_request_id ? [t('Client request id'), e.client_request_id] : null,
      [t('Time'), dateTimeMs(e.at_ms)],
      [t('Status'), statusBadge(e.status)],
      [t('Key'), `${names.get(e.key_id) || ''} ${e.key_id}`.trim()],
      e.team ? [t('Team'), `${teams.get(e.team) || ''} ${e.team}`.trim()] : null,
      [t('Endpoint'), e.endpoint],
      e.format ? [t('Client API'), e.format] : null,
      [t('Requested model'), e.requested_model],
      [t('Served by'), e.provider ? `${e.provider}/${e.model ?? ''}` : '–'],
      [t('Latency'), ms(e.latency_ms)],
      [t('Attempts'), num(e.attempts)],
      [t('Stream'), e.stream ? t('yes') : t('no')],
      [t('Cache'), e.cached ? t('hit') : t('no')],
      [t('Variants'), obj(e.variants)],
      [t('Tags'), obj(e.tags)],
      [t('Tokens'), t('{p} prompt + {c} completion = {t}', { p: num(e.prompt_tokens), c: num(e.completion_tokens), t: num(e.total_tokens) })],
      [t('Cost'), usd(e.cost_usd)],
      e.error ? [t('Error'), h('span', { class: 'error' }, e.error)] : null,
    ]),
    e.request_body !== undefined ? [h('h3', {}, t('Request body')), h('pre', {}, pretty(e.request_body))] : h('p', { class: 'muted' }, t('Bodies are not logged (start the gateway with --log-bodies to keep them).')),
    e.response_body !== undefined ? [h('h3', {}, t('Response body')), h('pre', {}, pretty(e.response_body))] : null,
  ), [
    { label: t('Compare cost'), value: 'compare', class: 'ghost', id: 'log-compare' },
    { label: t('Close'), value: true, id: 'log-close' },
  ]);
  if (choice === 'compare') {
    await costDialog({ promptTokens: e.prompt_tokens, completionTokens: e.completion_tokens, current: e.provider ? `${e.provider}/${e.model}` : null });
  }
}

async function logsPage(main) {
  const [names, teams] = await Promise.all([keyNames(), teamNames()]);
  const key = h('select', { id: 'logs-key' }, h('option', { value: '' }, t('any key')), [...names].map(([id, n]) => h('option', { value: id }, n)));
  const team = h('select', { id: 'logs-team' }, h('option', { value: '' }, t('any team')), [...teams].map(([id, n]) => h('option', { value: id }, n)));
  const model = h('input', { id: 'logs-model', placeholder: t('any model') });
  const provider = h('input', { id: 'logs-provider', placeholder: t('any provider') });
  const status = h('select', { id: 'logs-status' }, ['', '2xx', '4xx', '5xx', '429'].map((s) => h('option', { value: s }, s || t('any status'))));
  const since = h('select', { id: 'logs-since' }, [['', t('any time')], [String(HOUR), t('last hour')], [String(DAY), t('last day')], [String(7 * DAY), t('last week')]].map(([v, l]) => h('option', { value: v }, l)));
  const out = h('div', { id: 'logs-body' });
  const prev = h('button', { type: 'button', class: 'ghost', id: 'logs-prev', disabled: true }, t('← Newer'));
  const next = h('button', { type: 'button', class: 'ghost', id: 'logs-next', disabled: true }, t('Older →'));
  const pageNo = h('span', { class: 'muted' });
  const form = h('form', { class: 'card row' },
    h('label', {}, t('Key'), key), h('label', {}, t('Team'), team), h('label', { class: 'grow' }, t('Model'), model), h('label', { class: 'grow' }, t('Provider'), provider),
    h('label', {}, t('Status'), status), h('label', {}, t('Since'), since), h('button', { type: 'submit', id: 'logs-apply' }, t('Filter')));
  form.append(keepState('logs-filter', form, [key, team, model, provider, status, since], { onReset: () => form.requestSubmit() }));
  main.append(h('h1', {}, t('Logs')), form, h('section', { class: 'card' }, out, h('div', { class: 'row between' }, prev, pageNo, next)));

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
          { label: t('Time'), render: (e) => shortTime(e.at_ms) },
          { label: t('Status'), render: (e) => statusBadge(e.status) },
          { label: t('Key'), class: 'hide-sm', render: (e) => names.get(e.key_id) || e.key_id },
          { label: t('Model'), render: (e) => h('code', {}, e.provider ? `${e.provider}/${e.model}` : e.requested_model) },
          { label: t('Latency'), num: true, render: (e) => ms(e.latency_ms) },
          { label: t('Tokens'), num: true, class: 'hide-sm', render: (e) => num(e.total_tokens) },
          { label: t('Cost'), num: true, class: 'hide-sm', render: (e) => usd(e.cost_usd) },
          { label: t('Cache'), class: 'hide-sm', render: (e) => (e.cached ? t('hit') : '') },
        ],
        res.data,
        { empty: t('No requests match.'), onRow: (e) => showLog(e.request_id, names, teams), rowClass: () => 'log-row' },
      ));
      prev.disabled = page === 0;
      next.disabled = !nextCursor;
      pageNo.textContent = t('Page {n}', { n: page + 1 });
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
  return h('span', { class: `badge ${cls}`, id: 'reload-outcome' }, word(o));
}

function errorsTable(errors) {
  return table(
    [
      { label: t('File'), render: (e) => h('code', {}, e.file) },
      { label: t('Line'), num: true, render: (e) => (e.line ? `${e.line}${e.column ? `:${e.column}` : ''}` : '–') },
      { label: t('Field'), render: (e) => e.field || '–' },
      { label: t('Message'), render: (e) => h('span', { class: 'error' }, e.message) },
    ],
    errors,
    { empty: t('No errors.') },
  );
}

async function policiesPage(main) {
  const status = h('section', { class: 'card', id: 'config-status' }, h('p', { class: 'muted' }, t('Loading…')));
  const scripts = h('section', { class: 'card', id: 'policy-scripts' });
  const reloadBtn = h('button', { type: 'button', id: 'reload' }, t('Reload now'));
  main.append(h('div', { class: 'row between' }, h('h1', {}, t('Policies and config')), reloadBtn), status, scripts);
  let editor = null;

  async function loadConfig() {
    try {
      const [cfg, pol] = await Promise.all([api('/admin/config'), api('/admin/policies')]);
      const lr = cfg.last_reload;
      const errors = lr?.errors || [];
      fill(status, 
        h('h2', {}, t('Config')),
        kv([
          [t('Version'), num(cfg.version)],
          [t('Loaded at'), dateTime(cfg.loaded_at)],
          [t('Providers'), cfg.providers.join(', ') || '–'],
          [t('Skipped'), cfg.skipped.map((s) => s.name).join(', ') || '–'],
          [t('Folders'), `${cfg.providers_dir} · ${cfg.policies_dir}`],
          [t('Last reload'), lr ? h('span', {}, outcomeBadge(lr.outcome), ` ${dateTime(lr.at)} · ${lr.trigger} · ${ms(lr.duration_ms)}`) : t('none since start')],
          [t('Settings file'), cfg.settings_file || t('none (flags, environment and defaults)')],
          [t('Waiting for a restart'), (cfg.settings || []).filter((s) => s.restart_pending).map((s) => s.name).join(', ') || '–'],
        ]),
        errors.length ? [h('h3', { class: 'error' }, t('The last reload failed: {n} error(s); the previous config is still serving', { n: errors.length })), errorsTable(errors)] : null,
      );
      const bad = new Set(errors.map((e) => e.file.split('/').pop()));
      fill(scripts, 
        h('h2', {}, t('Loaded scripts')),
        pol.scripts.length
          ? h('ol', { class: 'mono' }, pol.scripts.map((s) => h('li', {}, h('button', { type: 'button', class: 'link', dataset: { script: s }, onclick: () => editor?.open(s) }, s), bad.has(s) ? h('span', { class: 'badge err' }, t('has errors')) : null)))
          : h('p', { class: 'empty' }, t('No policy scripts: requests are routed to the model they name.')),
        h('p', { class: 'muted' }, t('Scripts run in this order on every request. Click one to edit it below.')),
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
      toast(t('Reload: {outcome}', { outcome: word(r.outcome) }));
    } catch (e) {
      toast(e instanceof ApiError && e.body?.outcome ? t('Reload rolled back: {n} error(s)', { n: e.body.errors.length }) : e.message);
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
  const model = h('select', { id: 'sim-model' }, models.map((m) => h('option', { value: m }, m)), h('option', { value: '__custom' }, t('other…')));
  const message = h('input', { id: 'sim-message', value: 'Hello!' });
  const temperature = h('input', { id: 'sim-temperature', type: 'number', step: '0.1', min: '0', max: '2', placeholder: t('default') });
  const stream = h('input', { type: 'checkbox', id: 'sim-stream' });
  const endpoint = h('select', { id: 'sim-endpoint' }, ['chat/completions', 'completions', 'embeddings'].map((e) => h('option', { value: e }, e)));
  const key = h('select', { id: 'sim-key' }, h('option', { value: '' }, t('a default user key')), keys.data.filter((k) => !k.revoked_at).map((k) => h('option', { value: k.id }, `${k.name} (${word(k.role)})`)));
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
    h('h2', {}, t('Simulate a request')),
    h('p', { class: 'muted' }, t('Runs the policies on a request without calling a provider or charging a counter.')),
    h('div', { class: 'row' }, h('label', {}, t('Endpoint'), endpoint), h('label', {}, t('Model'), model), h('label', { class: 'grow' }, t('Message'), message), h('label', {}, t('Temperature'), temperature), h('label', { class: 'inline' }, stream, t('stream'))),
    h('label', {}, t('Request (edit freely; the fields above rebuild it)'), request),
    h('div', { class: 'row' }, h('label', { class: 'grow' }, t('As key'), key), h('label', { class: 'grow' }, t('Headers (name: value per line)'), headers), draft ? h('label', { class: 'inline' }, useDraft, t('Use the draft')) : null, h('button', { type: 'submit', id: 'sim-run' }, t('Simulate'))),
    out,
  );
  form.querySelector('#sim-run').before(keepState('simulate', form, [endpoint, model, message, temperature, stream, request, key, headers], { onReset: build }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    fill(out);
    try {
      let req;
      try {
        req = JSON.parse(request.value);
      } catch (err) {
        throw new Error(t('The request is not valid JSON: {message}', { message: err.message }));
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
      const limits = [...(r.limits || []).map((l) => ({ ...l, kind: t('requests') })), ...(r.token_limits || []).map((l) => ({ ...l, kind: t('tokens') }))];
      fill(out, h('div', { class: 'card', id: 'sim-decisions' },
        h('h3', {}, t('Decisions')),
        kv([
          d ? [t('Scripts'), h('span', { id: 'sim-with-draft' }, t('the saved scripts, with the draft of {name}', { name: d.name }))] : null,
          [t('Outcome'), r.error ? h('span', { class: 'badge err' }, t('script error')) : r.rejection ? h('span', { class: 'badge err' }, t('rejected {status}', { status: r.rejection.status })) : limits.some((l) => !l.would_pass) ? h('span', { class: 'badge warn' }, t('over a limit')) : h('span', { class: 'badge ok' }, t('would pass'))],
          [t('Route'), r.route.length ? r.route.join(' → ') : t('as requested')],
          [t('Targets'), r.targets.length ? h('span', { id: 'sim-targets' }, r.targets.join(' → ')) : h('span', { class: 'error' }, r.target_error || t('none'))],
          [t('Cache'), r.cache_ttl ? t('on, {n} s', { n: r.cache_ttl }) : t('off')],
          [t('Variants'), obj(r.variants)],
          [t('Headers'), obj(r.headers)],
          [t('Tags'), obj(r.tags)],
          r.rejection ? [t('Rejection'), `${r.rejection.status} ${r.rejection.message} (${r.rejection.script})`] : null,
          r.error ? [t('Error'), h('span', { class: 'error' }, r.error)] : null,
        ]),
        limits.length ? [h('h3', {}, t('Limits')), table([
          { label: t('Limit'), key: 'name' }, { label: t('Counts'), key: 'kind' },
          { label: t('Current'), num: true, render: (l) => num(l.current) }, { label: t('Max'), num: true, render: (l) => num(l.max) },
          { label: t('Window'), num: true, render: (l) => t('{n} s', { n: num(l.window_secs) }) },
          { label: t('Would pass'), render: (l) => h('span', { class: `badge ${l.would_pass ? 'ok' : 'err'}` }, l.would_pass ? t('yes') : t('no')) },
        ], limits)] : null,
        h('h3', {}, t('Request as it would go upstream')), h('pre', {}, pretty(r.request)),
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
  const system = h('textarea', { id: 'pg-system', rows: '2', placeholder: t('optional system prompt') });
  const prompt = h('textarea', { id: 'pg-prompt', rows: '4', required: true }, t('Say hello to the gateway in a few words.'));
  const maxTokens = h('input', { id: 'pg-max-tokens', type: 'number', min: '1', placeholder: t('default') });
  const temperature = h('input', { id: 'pg-temperature', type: 'number', step: '0.1', min: '0', max: '2', placeholder: t('default') });
  const send = h('button', { type: 'submit', id: 'pg-send' }, t('Send'));
  const stop = h('button', { type: 'button', class: 'ghost', id: 'pg-stop', disabled: true }, t('Stop'));
  const output = h('div', { class: 'output', id: 'pg-output', 'aria-live': 'polite' });
  const meta = h('div', { id: 'pg-meta' });
  const form = h('form', { class: 'card', id: 'playground' },
    h('div', { class: 'row' }, h('label', { class: 'grow' }, t('Model'), model), h('label', {}, t('Max tokens'), maxTokens), h('label', {}, t('Temperature'), temperature)),
    h('label', {}, t('System'), system), h('label', {}, t('Message'), prompt),
    h('div', { class: 'row end' }, stop, send),
  );
  main.append(h('h1', {}, t('Playground')), form, h('section', { class: 'card' }, h('h2', {}, t('Reply')), output, meta));
  stop.before(keepState('playground', form, [model, system, prompt, maxTokens, temperature]));
  if (!models.data.length) output.textContent = t('No model is available.');
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
        [t('Status'), h('span', { id: 'pg-status' }, String(info.status))],
        [t('Provider'), h('span', { id: 'pg-provider' }, info.provider ? `${info.provider}${info.model ? ` (${info.model})` : ''}` : '–')],
        [t('First token'), first === null ? '–' : ms(first - started)],
        [t('Latency'), h('span', { id: 'pg-latency' }, done ? ms(performance.now() - started) : t('streaming…'))],
        [t('Tokens'), h('span', { id: 'pg-tokens' }, usage ? t('{p} prompt + {c} completion = {t}', { p: num(usage.prompt_tokens), c: num(usage.completion_tokens), t: num(usage.total_tokens) }) : '–')],
        [t('Cost'), h('span', { id: 'pg-cost' }, cost === null ? (usage ? t('no pricing for this model') : '–') : usd(cost))],
        info.requestId ? [t('Request id'), h('code', {}, info.requestId)] : null,
      ]), done && usage ? h('button', {
        type: 'button', class: 'ghost small', id: 'pg-compare',
        onclick: () => costDialog({ promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, current: model.value }),
      }, t('Compare cost')) : null);
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
          if (chunk.error) throw new Error(chunk.error.message || t('the stream ended with an error'));
          if (chunk.usage) usage = chunk.usage;
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) {
            if (first === null) first = performance.now();
            output.append(delta);
          }
        }
        render(false);
      }
      if (!finished) throw new Error(t('The stream ended without [DONE]: the reply may be incomplete.'));
      output.dataset.done = 'true';
    } catch (err) {
      if (err.name === 'AbortError') {
        output.append(` ${t('[stopped]')}`);
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
