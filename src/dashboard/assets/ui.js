// DOM and formatting helpers. Text always goes in as text (never as HTML), so nothing the
// gateway returns can inject markup.

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

export const nf = new Intl.NumberFormat(undefined);
export const num = (n) => (n === undefined || n === null ? '–' : nf.format(n));
export const compact = (n) =>
  new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 }).format(n);
export const pct = (r) => (r === undefined || r === null || Number.isNaN(r) ? '–' : `${(r * 100).toFixed(r && r < 0.1 ? 2 : 1)}%`);
export function ms(v) {
  if (v === undefined || v === null) return '–';
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v > 0 && v < 10) return `${Number(v.toFixed(1))} ms`;
  return `${Math.round(v)} ms`;
}
export function usd(v) {
  if (v === undefined || v === null) return '–';
  if (v === 0) return '$0';
  if (Math.abs(v) < 0.01) return `$${v.toPrecision(2)}`;
  return `$${v.toFixed(2)}`;
}
export const dateTime = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : '–');
export const dateTimeMs = (msecs) => (msecs ? new Date(msecs).toLocaleString() : '–');

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
// (or null on Escape / backdrop).
export function modal(title, body, buttons) {
  const root = document.getElementById('modal');
  const actions = document.getElementById('modal-actions');
  document.getElementById('modal-title').textContent = title;
  fill(document.getElementById('modal-body'), body);
  return new Promise((resolve) => {
    const close = (v) => {
      root.hidden = true;
      document.removeEventListener('keydown', onKey);
      root.removeEventListener('click', onBackdrop);
      resolve(v);
    };
    const onKey = (e) => {
      if (e.key === 'Escape') close(null);
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
    { label: 'Cancel', value: false, class: 'ghost', id: 'confirm-cancel' },
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
  const copy = h('button', { type: 'button', class: 'ghost', id: 'secret-copy' }, 'Copy');
  copy.addEventListener('click', async () => {
    copy.textContent = (await copyText(secret)) ? 'Copied' : 'Copy failed';
  });
  return modal(title, h('div', {}, h('p', {}, note), h('div', { class: 'secret' }, code, copy)), [
    { label: 'Done', value: true, id: 'secret-done' },
  ]);
}

export function table(columns, rows, { onRow, empty = 'Nothing yet.', rowClass } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
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
  return h('div', { class: 'table-wrap' }, h('table', {}, thead, tbody));
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
