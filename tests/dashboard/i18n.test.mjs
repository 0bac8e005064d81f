// The dashboard's catalogs (src/dashboard/assets/lang-*.js): every key a page uses is in both,
// with the same placeholders; and the cost comparison's arithmetic. `node --test tests/dashboard/`.
// The browser test (tests/api/dashboard_e2e.rs) checks the rendered pages in Chinese.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { en } from '../../src/dashboard/assets/lang-en.js';
import { zh } from '../../src/dashboard/assets/lang-zh.js';
import { t, setLang } from '../../src/dashboard/assets/i18n.js';
import { compareCosts, pricedModels } from '../../src/dashboard/assets/costs.js';

const ASSETS = new URL('../../src/dashboard/assets/', import.meta.url);

// Every literal key: `t('…')` in the scripts, `data-i18n…="…"` in index.html. A key built at
// run time would escape this; the pages map such values through literal t() calls instead,
// and t() warns on the console (which the browser test fails on) for any key not found.
function usedKeys() {
  const keys = new Map();
  for (const file of readdirSync(ASSETS)) {
    if (!file.endsWith('.js') || file.startsWith('lang-')) continue;
    const src = readFileSync(new URL(file, ASSETS), 'utf8');
    for (const m of src.matchAll(/\bt\('((?:[^'\\\n]|\\.)*)'/g)) keys.set(m[1].replace(/\\'/g, "'"), file);
  }
  const html = readFileSync(new URL('index.html', ASSETS), 'utf8');
  for (const m of html.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]*)"/g)) keys.set(m[1], 'index.html');
  return keys;
}

const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test('every key used by a page is in both catalogs', () => {
  const keys = usedKeys();
  assert.ok(keys.size > 300, `only ${keys.size} keys found: is the extraction broken?`);
  const missing = [];
  for (const [key, file] of keys) {
    if (!(key in en)) missing.push(`en: "${key}" (${file})`);
    if (!(key in zh)) missing.push(`zh: "${key}" (${file})`);
  }
  assert.deepEqual(missing, []);
});

test('the catalogs have the same keys, none unused, and the same placeholders', () => {
  assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
  const used = usedKeys();
  assert.deepEqual(Object.keys(en).filter((k) => !used.has(k)), [], 'keys no page uses');
  for (const key of Object.keys(en)) {
    assert.deepEqual(placeholders(zh[key]), placeholders(key), `placeholders of "${key}"`);
    assert.ok(zh[key].trim(), `"${key}" is empty in zh`);
  }
});

test('the Chinese catalog is translated, not copied', () => {
  // Entries that are names or symbols may read the same; anything with an English word may not.
  const same = Object.keys(zh).filter((k) => zh[k] === k && /[a-z]{3,}/i.test(k.replace(/\{\w+\}/g, '')));
  assert.deepEqual(same, []);
});

test('t fills placeholders in the chosen language and falls back to the key', () => {
  setLang('zh');
  assert.equal(t('Page {n}', { n: 3 }), '第 3 页');
  setLang('en');
  assert.equal(t('Page {n}', { n: 3 }), 'Page 3');
  const warn = console.warn;
  const warned = [];
  console.warn = (m) => warned.push(m);
  try {
    assert.equal(t('no such key'), 'no such key');
  } finally {
    console.warn = warn;
  }
  assert.equal(warned.length, 1);
});

test('the cost comparison prices prompt and completion tokens per million, cheapest first', () => {
  const providers = {
    data: [
      { name: 'a', models: [{ id: 'a/big', pricing: { input: 10, output: 30 } }, { id: 'a/free', pricing: null }] },
      { name: 'b', models: [{ id: 'b/small', pricing: { input: 0.5, output: 1.5 } }, { id: 'b/mid', pricing: { input: 2, output: 1 } }] },
    ],
  };
  const rows = compareCosts(pricedModels(providers), 1000, 500);
  assert.deepEqual(rows.map((r) => r.id), ['b/small', 'b/mid', 'a/big']);
  assert.equal(rows[0].cost, (1000 * 0.5 + 500 * 1.5) / 1e6);
  assert.equal(rows[1].cost, (1000 * 2 + 500 * 1) / 1e6);
  assert.equal(rows[2].cost, (1000 * 10 + 500 * 30) / 1e6);
});

test('latency percentiles from roll-up histograms read as the gateway reads them', async () => {
  const { quantile, latencyByStart } = await import('../../src/dashboard/assets/latency.js');
  // As src/store/contract.rs: ten requests at 0..900 ms.
  const hist = [1, 1, 1, 3, 4, 0, 0, 0, 0, 0];
  assert.ok(Math.abs(quantile(hist, 0.5) - (250 + (250 * 2) / 3)) < 1e-9);
  assert.equal(quantile(hist, 0.95), 937.5);
  assert.equal(quantile([0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 0.5), 30000);
  assert.equal(quantile([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.5), null);
  // Two groups' rows of one bucket add up before the percentile is read.
  const byStart = latencyByStart([
    { start: 0, latency_hist: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0], ttft_hist: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
    { start: 0, latency_hist: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0], ttft_hist: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
  ]);
  assert.equal(byStart.get(0).p50, 750);
  assert.equal(byStart.get(0).ttft50, 25);
});

test('the language follows the browser at first, and a saved choice wins', async () => {
  const saved = new Map();
  const define = (name, value) => Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  const before = { navigator: globalThis.navigator, localStorage: globalThis.localStorage };
  try {
    define('localStorage', { getItem: (k) => saved.get(k) ?? null, setItem: (k, v) => saved.set(k, v) });
    define('navigator', { language: 'zh-CN' });
    // A fresh copy of the module (a different URL) reads the browser again.
    const zhFirst = await import('../../src/dashboard/assets/i18n.js?browser=zh');
    assert.equal(zhFirst.getLang(), 'zh');
    define('navigator', { language: 'en-GB' });
    assert.equal((await import('../../src/dashboard/assets/i18n.js?browser=en')).getLang(), 'en');
    zhFirst.setLang('zh');
    assert.equal(saved.get('switchboard.lang'), 'zh');
    assert.equal((await import('../../src/dashboard/assets/i18n.js?browser=en-saved')).getLang(), 'zh', 'the saved choice');
  } finally {
    define('navigator', before.navigator);
    define('localStorage', before.localStorage);
  }
});
