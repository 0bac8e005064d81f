// Forms keep their state: what was typed in the playground, simulate and filter forms is kept
// in sessionStorage (this tab only, like the admin key) and restored after a page change or a
// reload; "Reset" forgets it and puts the defaults back.

import { h } from './ui.js';
import { t } from './i18n.js';

const PREFIX = 'switchboard.form.';

const read = (c) => (c.type === 'checkbox' ? c.checked : c.value);
function write(c, v) {
  if (c.type === 'checkbox') c.checked = Boolean(v);
  // A <select> keeps its value only when the saved option still exists.
  else if (c.tagName !== 'SELECT' || [...c.options].some((o) => o.value === v)) c.value = v;
}

// `form`: listened to for input and change (after the controls' own listeners, so what they
// derive is saved too); `controls`: the elements kept, each with an id. `onReset` runs after
// the defaults are back. Returns the Reset button to place in the form.
export function keepState(name, form, controls, { onReset } = {}) {
  const key = PREFIX + name;
  const defaults = controls.map(read);
  const save = () => sessionStorage.setItem(key, JSON.stringify(Object.fromEntries(controls.map((c) => [c.id, read(c)]))));
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(key) || 'null');
  } catch {
    sessionStorage.removeItem(key);
  }
  if (saved) for (const c of controls) if (c.id in saved) write(c, saved[c.id]);
  form.addEventListener('input', save);
  form.addEventListener('change', save);
  const reset = h('button', { type: 'button', class: 'ghost', id: `${name}-reset` }, t('Reset'));
  reset.addEventListener('click', () => {
    sessionStorage.removeItem(key);
    controls.forEach((c, i) => write(c, defaults[i]));
    onReset?.();
  });
  return reset;
}
