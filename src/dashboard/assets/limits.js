// Limits and budgets (a key's or a team's, the `limits` object of the admin API) as form
// fields and as short text.

import { h, num, usd } from './ui.js';

// [field, label, kind]: `count` is a whole number, `usd` an amount.
export const LIMITS = [
  ['rpm', 'Requests / min', 'count'],
  ['rpd', 'Requests / day', 'count'],
  ['tpm', 'Tokens / min', 'count'],
  ['tpd', 'Tokens / day', 'count'],
  ['max_parallel', 'In flight', 'count'],
  ['budget_usd_day', 'USD / day', 'usd'],
  ['budget_usd_month', 'USD / month', 'usd'],
  ['budget_usd_total', 'USD in all', 'usd'],
];

// An input per limit, filled from `limits`. `read()` returns the limits entered (an empty
// field is no limit), or throws saying which field is wrong.
export function limitFields(prefix, limits = {}) {
  const inputs = LIMITS.map(([field, label, kind]) => ({
    field,
    label,
    kind,
    input: h('input', {
      id: `${prefix}-${field.replaceAll('_', '-')}`,
      type: 'number',
      min: '0',
      step: kind === 'usd' ? '0.01' : '1',
      placeholder: 'none',
      value: limits?.[field] ?? '',
      dataset: { limit: field },
    }),
  }));
  const el = h('div', { class: 'row limits' }, inputs.map((i) => h('label', {}, i.label, i.input)));
  const read = () => {
    const out = {};
    for (const { field, label, kind, input } of inputs) {
      if (input.validity?.badInput) throw new Error(`${label}: not a number`);
      const text = input.value.trim();
      if (text === '') continue;
      const n = Number(text);
      if (!Number.isFinite(n) || n < 0 || (kind === 'count' && !Number.isInteger(n))) {
        throw new Error(`${label}: ${kind === 'count' ? 'a whole number' : 'an amount in USD'}, 0 or more`);
      }
      out[field] = n;
    }
    return out;
  };
  return { el, read };
}

const TEXT = {
  rpm: (v) => `${num(v)} req/min`,
  rpd: (v) => `${num(v)} req/day`,
  tpm: (v) => `${num(v)} tok/min`,
  tpd: (v) => `${num(v)} tok/day`,
  max_parallel: (v) => `${num(v)} in flight`,
  budget_usd_day: (v) => `${usd(v)}/day`,
  budget_usd_month: (v) => `${usd(v)}/month`,
  budget_usd_total: (v) => `${usd(v)} in all`,
};

// The limits set, as pills; `none` when there is none.
export function limitsPills(limits) {
  const set = LIMITS.filter(([field]) => limits?.[field] !== undefined && limits?.[field] !== null);
  if (!set.length) return h('span', { class: 'muted' }, 'none');
  return h('div', { class: 'pill-list limits-text' }, set.map(([field]) => h('code', {}, TEXT[field](limits[field]))));
}

// A limit's amounts in its unit: USD for cost budgets (counted in millionths), else a number.
function amount(kind, v) {
  return kind === 'micro_usd' ? usd(v / 1e6) : num(v);
}

// Each limit as it stands (the API's `limit_use`), as a bar of what is used and reserved.
export function limitBars(limitUse) {
  if (!limitUse?.length) return null;
  return h('div', { class: 'limit-bars' }, limitUse.map((l) => {
    const taken = l.current + l.reserved;
    const label = `${l.name}: ${amount(l.kind, l.current)}${l.reserved ? ` + ${amount(l.kind, l.reserved)} reserved` : ''} of ${amount(l.kind, l.max)}`;
    return h('div', { class: 'limit-bar', title: label },
      h('progress', { max: String(Math.max(l.max, 1)), value: String(Math.min(taken, l.max)) }),
      h('small', {}, label));
  }));
}

// The limits set, with their use when the API gave it.
export function limitsWithUse(limits, limitUse) {
  return h('div', {}, limitsPills(limits), limitBars(limitUse));
}
