// Limits and budgets (a key's or a team's, the `limits` object of the admin API) as form
// fields and as short text.

import { h, num, usd } from './ui.js';
import { t } from './i18n.js';

// [field, label, kind]: `count` is a whole number, `usd` an amount. Labels are drawn in the
// current language (a function, as the language can change).
export const LIMITS = [
  ['rpm', () => t('Requests / min'), 'count'],
  ['rpd', () => t('Requests / day'), 'count'],
  ['tpm', () => t('Tokens / min'), 'count'],
  ['tpd', () => t('Tokens / day'), 'count'],
  ['max_parallel', () => t('In flight'), 'count'],
  ['budget_usd_day', () => t('USD / day'), 'usd'],
  ['budget_usd_month', () => t('USD / month'), 'usd'],
  ['budget_usd_total', () => t('USD in all'), 'usd'],
];

// An input per limit, filled from `limits`. `read()` returns the limits entered (an empty
// field is no limit), or throws saying which field is wrong.
export function limitFields(prefix, limits = {}) {
  const inputs = LIMITS.map(([field, label, kind]) => ({
    field,
    label: label(),
    kind,
    input: h('input', {
      id: `${prefix}-${field.replaceAll('_', '-')}`,
      type: 'number',
      min: '0',
      step: kind === 'usd' ? '0.01' : '1',
      placeholder: t('none'),
      value: limits?.[field] ?? '',
      dataset: { limit: field },
    }),
  }));
  const el = h('div', { class: 'row limits' }, inputs.map((i) => h('label', {}, i.label, i.input)));
  const read = () => {
    const out = {};
    for (const { field, label, kind, input } of inputs) {
      if (input.validity?.badInput) throw new Error(t('{label}: not a number', { label }));
      const text = input.value.trim();
      if (text === '') continue;
      const n = Number(text);
      if (!Number.isFinite(n) || n < 0 || (kind === 'count' && !Number.isInteger(n))) {
        throw new Error(kind === 'count' ? t('{label}: a whole number, 0 or more', { label }) : t('{label}: an amount in USD, 0 or more', { label }));
      }
      out[field] = n;
    }
    return out;
  };
  return { el, read };
}

const TEXT = {
  rpm: (v) => t('{n} req/min', { n: num(v) }),
  rpd: (v) => t('{n} req/day', { n: num(v) }),
  tpm: (v) => t('{n} tok/min', { n: num(v) }),
  tpd: (v) => t('{n} tok/day', { n: num(v) }),
  max_parallel: (v) => t('{n} in flight', { n: num(v) }),
  budget_usd_day: (v) => t('{amount}/day', { amount: usd(v) }),
  budget_usd_month: (v) => t('{amount}/month', { amount: usd(v) }),
  budget_usd_total: (v) => t('{amount} in all', { amount: usd(v) }),
};

// The limits set, as pills; `none` when there is none.
export function limitsPills(limits) {
  const set = LIMITS.filter(([field]) => limits?.[field] !== undefined && limits?.[field] !== null);
  if (!set.length) return h('span', { class: 'muted' }, t('none'));
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
    const label = l.reserved
      ? t('{name}: {current} + {reserved} reserved of {max}', { name: l.name, current: amount(l.kind, l.current), reserved: amount(l.kind, l.reserved), max: amount(l.kind, l.max) })
      : t('{name}: {current} of {max}', { name: l.name, current: amount(l.kind, l.current), max: amount(l.kind, l.max) });
    return h('div', { class: 'limit-bar', title: label },
      h('progress', { max: String(Math.max(l.max, 1)), value: String(Math.min(taken, l.max)) }),
      h('small', {}, label));
  }));
}

// The limits set, with their use when the API gave it.
export function limitsWithUse(limits, limitUse) {
  return h('div', {}, limitsPills(limits), limitBars(limitUse));
}
