// DOM and formatting helpers. Text always goes in as text (never as HTML), so nothing the
// gateway returns can inject markup. Numbers, dates and money use the chosen language's locale.

import { t, locale } from './i18n.js';

export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'value') e.value = v;
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// Replaces an element's children, skipping null/false and flattening arrays (as `h` does).
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

export const num = (n) => (n === undefined || n === null ? '–' : new Intl.NumberFormat(locale()).format(n));
export const compact = (n) =>
  new Intl.NumberFormat(locale(), { notation: 'compact', maximumFractionDigits: 1 }).format(n);
export const pct = (r) =>
  r === undefined || r === null || Number.isNaN(r)
    ? '–'
    : new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: r && r < 0.1 ? 2 : 1 }).format(r);
export function ms(v) {
  if (v === undefined || v === null) return '–';
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v > 0 && v < 10) return `${Number(v.toFixed(1))} ms`;
  return `${Math.round(v)} ms`;
}
// US dollars (what the pricing is in), written the locale's way; small amounts keep two
// significant digits.
export function usd(v) {
  if (v === undefined || v === null) return '–';
  const small = v !== 0 && Math.abs(v) < 0.01;
  return new Intl.NumberFormat(locale(), {
    style: 'currency',
    currency: 'USD',
    ...(small ? { maximumSignificantDigits: 2 } : { minimumFractionDigits: v === 0 ? 0 : 2, maximumFractionDigits: 2 }),
  }).format(v);
}
export const dateTime = (secs) => (secs ? new Date(secs * 1000).toLocaleString(locale()) : '–');
export const dateTimeMs = (msecs) => (msecs ? new Date(msecs).toLocaleString(locale()) : '–');
export const timeOnly = (d = new Date()) => d.toLocaleTimeString(locale());

// A duration in seconds as days, hours and minutes (or seconds under a minute).
export function duration(secs) {
  if (secs === undefined || secs === null) return '–';
  const d = Math.floor(secs / 86400);
  const hrs = Math.floor((secs % 86400) / 3600);
  const min = Math.floor((secs % 3600) / 60);
  if (secs < 60) return t('{n} s', { n: num(secs) });
  if (d) return t('{d} d {h} h', { d: num(d), h: num(hrs) });
  return t('{h} h {m} min', { h: num(hrs), m: num(min) });
}

export function toast(message) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    t.hidden = true;
  }, 3000);
}

// A modal with the given body and buttons; resolves with the value of the button pressed
// (or null on Escape / backdrop). Tab stays inside it, and focus goes back where it was.
export function modal(title, body, buttons) {
  const root = document.getElementById('modal');
  const opener = document.activeElement;
  const actions = document.getElementById('modal-actions');
  document.getElementById('modal-title').textContent = title;
  fill(document.getElementById('modal-body'), body);
  return new Promise((resolve) => {
    const close = (v) => {
      root.hidden = true;
      if (opener && opener.isConnected) opener.focus({ preventScroll: true });
      document.removeEventListener('keydown', onKey);
      root.removeEventListener('click', onBackdrop);
      resolve(v);
    };
    const onKey = (e) => {
      if (e.key === 'Escape') close(null);
      if (e.key === 'Tab') {
        const focusable = [...root.querySelectorAll('button, [href], input, select, textarea, summary, [tabindex]:not([tabindex="-1"])')].filter((x) => !x.disabled && x.offsetParent !== null);
        if (!focusable.length) return;
        const [first, last] = [focusable[0], focusable[focusable.length - 1]];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first.focus();
        }
      }
    };
    const onBackdrop = (e) => {
      if (e.target === root) close(null);
    };
    fill(
      actions,
      ...buttons.map((b) =>
        h('button', { type: 'button', class: b.class || '', id: b.id, onclick: () => close(b.value) }, b.label),
      ),
    );
    document.addEventListener('keydown', onKey);
    root.addEventListener('click', onBackdrop);
    root.hidden = false;
    actions.lastElementChild?.focus({ preventScroll: true });
    root.querySelector('.modal-box').scrollTop = 0;
  });
}

export async function confirmAction(title, text, label) {
  const ok = await modal(title, h('p', {}, text), [
    { label: t('Cancel'), value: false, class: 'ghost', id: 'confirm-cancel' },
    { label, value: true, class: 'danger', id: 'confirm-ok' },
  ]);
  return ok === true;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', {}, text);
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand('copy');
    ta.remove();
    return ok;
  }
}

// Shows a secret once, with a copy button.
export function showSecret(title, secret, note) {
  const code = h('code', { id: 'secret-value' }, secret);
  const copy = h('button', { type: 'button', class: 'ghost', id: 'secret-copy' }, t('Copy'));
  copy.addEventListener('click', async () => {
    copy.textContent = (await copyText(secret)) ? t('Copied') : t('Copy failed');
  });
  return modal(title, h('div', {}, h('p', {}, note), h('div', { class: 'secret' }, code, copy)), [
    { label: t('Done'), value: true, id: 'secret-done' },
  ]);
}

export function table(columns, rows, { onRow, empty, rowClass, caption } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty ?? t('Nothing yet.'));
  const thead = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : c.class }, c.label))));
  const tbody = h(
    'tbody',
    {},
    rows.map((r) => {
      const tr = h(
        'tr',
        { class: [onRow ? 'clickable' : '', rowClass ? rowClass(r) : ''].join(' ').trim() || undefined, tabindex: onRow ? '0' : undefined },
        columns.map((c) => h('td', { class: c.num ? 'num' : c.class }, c.render ? c.render(r) : r[c.key])),
      );
      if (onRow) {
        tr.addEventListener('click', () => onRow(r, tr));
        tr.addEventListener('keydown', (e) => {
          if (e.key === 'Enter') onRow(r, tr);
        });
      }
      return tr;
    }),
  );
  return h('div', { class: 'table-wrap' }, h('table', {}, caption ? h('caption', { class: 'sr-only' }, caption) : null, thead, tbody));
}

export function stat(label, value, sub, id) {
  return h('div', { class: 'stat', id }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '–')]));
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e?.message || String(e));
}

// JSON (or a string holding JSON) indented; other text as it is.
export function pretty(v) {
  if (typeof v !== 'string') return JSON.stringify(v, null, 2);
  try {
    return JSON.stringify(JSON.parse(v), null, 2);
  } catch {
    return v;
  }
}
