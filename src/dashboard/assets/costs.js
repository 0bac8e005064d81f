// Cost comparison: what a request's prompt and completion tokens would cost on every priced
// model, cheapest first, from the pricing `GET /admin/providers` reports (USD per million
// tokens). Prompt-cache prices are left out: the comparison is of plain input and output.

import { api } from './api.js';
import { h, modal, table, usd, num } from './ui.js';
import { t } from './i18n.js';

// Every priced model of the providers list, once per `provider/model` id.
export function pricedModels(providers) {
  const out = [];
  for (const p of providers?.data || []) {
    for (const m of p.models || []) if (m.pricing) out.push({ id: m.id, input: m.pricing.input, output: m.pricing.output });
  }
  return out;
}

// The cost of `promptTokens` and `completionTokens` on each model, cheapest first (ties by id).
export function compareCosts(models, promptTokens, completionTokens) {
  return models
    .map((m) => ({ ...m, cost: (promptTokens * m.input + completionTokens * m.output) / 1e6 }))
    .sort((a, b) => a.cost - b.cost || a.id.localeCompare(b.id));
}

// The dialog; `current`: the model the request was served by (`provider/model`), marked.
export async function costDialog({ promptTokens, completionTokens, current }) {
  let rows;
  try {
    rows = compareCosts(pricedModels(await api('/admin/providers')), promptTokens, completionTokens);
  } catch (e) {
    rows = null;
    await modal(t('Cost comparison'), h('p', { class: 'error', role: 'alert' }, e.message), [{ label: t('Close'), value: true, id: 'cost-close' }]);
    return;
  }
  const body = h('div', { id: 'cost-compare' },
    h('p', {}, t('{p} prompt and {c} completion tokens on every priced model, cheapest first.', { p: num(promptTokens), c: num(completionTokens) })),
    table(
      [
        { label: t('Model'), render: (r) => [h('code', {}, r.id), r.id === current ? h('span', { class: 'badge top' }, t('this request')) : null] },
        { label: t('Input $/M'), num: true, render: (r) => usd(r.input) },
        { label: t('Output $/M'), num: true, render: (r) => usd(r.output) },
        { label: t('Cost'), num: true, render: (r) => h('span', { class: 'cost', dataset: { usd: String(r.cost), model: r.id } }, usd(r.cost)) },
      ],
      rows,
      { empty: t('No model has pricing.'), rowClass: (r) => (r.id === current ? 'cost-row current' : 'cost-row'), caption: t('Cost comparison') },
    ),
  );
  await modal(t('Cost comparison'), body, [{ label: t('Close'), value: true, id: 'cost-close' }]);
}
