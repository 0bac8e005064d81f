// The policy editor on the Policies page: a script's source in a textarea with a line-number
// gutter, checked, tested and simulated as a draft through the admin API before it is saved.
// Nothing here compiles or judges a script: the gateway does, with the engine a reload uses.

import { api } from './api.js';
import { h, fill, toast, modal, confirmAction, errorBox, table } from './ui.js';
import { highlight } from './highlight.js';
import { t } from './i18n.js';

const TEMPLATE = 'fn on_request(req, ctx) {\n    // ctx.route(["provider/model"]);\n}\n';
const path = (name) => `/admin/policies/${encodeURIComponent(name)}`;

// `scripts`: the loaded names; `writable`: whether Save, Delete and New are offered;
// `onSaved`: called after a save or delete (the page reloads its status).
export function policyEditor({ scripts, writable, onSaved }) {
  const select = h('select', { id: 'editor-script' });
  const source = h('textarea', { id: 'editor-source', class: 'mono', spellcheck: 'false', wrap: 'off', rows: '18', autocomplete: 'off', 'aria-label': t('Script source') });
  const gutter = h('div', { id: 'editor-gutter', class: 'gutter mono', 'aria-hidden': 'true' });
  // The coloured copy of the text, under the textarea (whose own text is transparent).
  const shade = h('pre', { id: 'editor-highlight', class: 'code-shade mono', 'aria-hidden': 'true' });
  const state = h('span', { id: 'editor-status', class: 'muted' });
  const out = h('div', { id: 'editor-result' });
  const button = (id, label, onclick, cls) => h('button', { type: 'button', id, class: cls, onclick }, label);
  // The draft: which script, whether it is new (not on disk yet), and the text as loaded.
  let current = { name: '', isNew: false, loaded: '' };
  let errorLines = new Set();
  // Lines of the draft that the last fixture run did not execute.
  let missLines = new Set();

  const lineHeight = () => parseFloat(getComputedStyle(source).lineHeight) || 18;
  function renderGutter() {
    const count = source.value.split('\n').length;
    const mark = (n) => (errorLines.has(n) ? 'err' : missLines.has(n) ? 'miss' : undefined);
    fill(gutter, Array.from({ length: count }, (_, i) => h('div', { class: mark(i + 1), title: missLines.has(i + 1) ? 'not run by any fixture' : undefined }, String(i + 1))));
    fill(shade, highlight(source.value));
    syncScroll();
  }
  function syncScroll() {
    gutter.scrollTop = source.scrollTop;
    shade.scrollTop = source.scrollTop;
    shade.scrollLeft = source.scrollLeft;
  }
  function markDirty() {
    const dirty = current.isNew || source.value !== current.loaded;
    state.textContent = current.name ? `${current.name}${current.isNew ? ` ${t('(new, not saved)')}` : dirty ? ` ${t('(modified, not saved)')}` : ''}` : '';
  }
  source.addEventListener('input', () => {
    errorLines = new Set();
    missLines = new Set();
    renderGutter();
    markDirty();
  });
  source.addEventListener('scroll', syncScroll);
  // Tab indents instead of leaving the field.
  source.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab' || e.shiftKey || e.ctrlKey || e.altKey || e.metaKey) return;
    e.preventDefault();
    const { selectionStart: s, selectionEnd: end } = source;
    source.setRangeText('    ', s, end, 'end');
    source.dispatchEvent(new Event('input'));
  });

  // Selects line `line` and scrolls it into view.
  function jumpTo(line) {
    const lines = source.value.split('\n');
    const n = Math.min(Math.max(line, 1), lines.length);
    const start = lines.slice(0, n - 1).reduce((a, l) => a + l.length + 1, 0);
    source.focus();
    source.setSelectionRange(start, start + lines[n - 1].length);
    source.scrollTop = Math.max(0, (n - 3) * lineHeight());
    syncScroll();
  }

  function showErrors(errors, title) {
    errorLines = new Set(errors.filter((e) => e.line).map((e) => e.line));
    renderGutter();
    fill(out, h('div', { class: 'card', id: 'editor-errors' },
      h('h3', { class: 'error' }, title),
      h('ul', {}, errors.map((e) => h('li', { class: 'editor-error' },
        e.line ? h('button', { type: 'button', class: 'link', onclick: () => jumpTo(e.line) }, e.column ? t('line {line}, column {column}', { line: e.line, column: e.column }) : t('line {line}', { line: e.line })) : null,
        e.line ? ': ' : null,
        h('span', { class: 'error' }, e.message)))),
    ));
  }

  // An API error on a draft (`invalid_policy`) names its line in the message.
  function showFailure(err) {
    const line = /line (\d+)/.exec(err.message || '');
    if (err.body?.error?.code === 'invalid_policy' && line) {
      showErrors([{ line: Number(line[1]), message: err.message }], t('The draft does not compile'));
    } else {
      fill(out, errorBox(err));
    }
  }

  async function open(name) {
    fill(out);
    errorLines = new Set();
    try {
      const r = await api(`${path(name)}/source`);
      current = { name, isNew: false, loaded: r.source };
      source.value = r.source;
    } catch (e) {
      current = { name, isNew: false, loaded: '' };
      source.value = '';
      fill(out, errorBox(e));
    }
    select.value = name;
    renderGutter();
    markDirty();
  }

  function options(names, selected) {
    fill(select, names.map((n) => h('option', { value: n }, n)));
    if (selected) select.value = selected;
  }
  select.addEventListener('change', async () => {
    if (current.name && source.value !== current.loaded && !(await confirmAction(t('Discard the draft?'), t('Your changes to {name} are not saved.', { name: current.name }), t('Discard')))) {
      select.value = current.name;
      return;
    }
    // Leaving a new, unsaved script drops it from the list.
    const name = select.value;
    options(scripts, name);
    open(name);
  });

  async function validate() {
    fill(out);
    try {
      const r = await api('/admin/policies/validate', { method: 'POST', body: draft() });
      if (r.valid) {
        errorLines = new Set();
        renderGutter();
        fill(out, h('p', { class: 'ok', id: 'editor-valid' }, t('{name} compiles.', { name: current.name })));
      } else {
        showErrors(r.errors, t('{name} does not compile', { name: current.name }));
      }
    } catch (e) {
      showFailure(e);
    }
  }

  async function runFixtures() {
    fill(out);
    try {
      const r = await api('/admin/policies/test', { method: 'POST', body: { draft: draft() } });
      const mine = r.coverage.find((c) => c.script === current.name);
      missLines = new Set(mine ? mine.not_run : []);
      renderGutter();
      const summary = (c) => `${t('{script}: {executed}/{lines} lines executed', { script: c.script, executed: c.executed, lines: c.lines })}${c.not_run.length ? t('; not run: {lines}', { lines: c.not_run.join(', ') }) : ''}`;
      fill(out, h('div', { class: 'card', id: 'editor-fixtures' },
        h('h3', { class: r.failed ? 'error' : undefined }, t('Fixtures with this draft: {passed} passed, {failed} failed', { passed: r.passed, failed: r.failed })),
        table([
          { label: t('File'), render: (c) => h('code', {}, c.file) },
          { label: t('Case'), key: 'name' },
          { label: t('Result'), render: (c) => h('span', { class: `badge ${c.passed ? 'ok' : 'err'}` }, c.passed ? t('pass') : t('fail')) },
          { label: t('What differed'), render: (c) => c.problems.join('; ') || '–' },
        ], r.cases, { empty: t('No fixtures in policies/tests.') }),
        r.cases.length ? [h('h3', {}, t('Lines the fixtures executed')), h('ul', { id: 'editor-coverage', class: 'mono' }, r.coverage.map((c) => h('li', {}, summary(c)))),
          h('p', { class: 'muted' }, t('Lines of this draft that no fixture ran are marked in the gutter.'))] : null,
      ));
    } catch (e) {
      showFailure(e);
    }
  }

  async function save() {
    const { name } = current;
    if (!(await confirmAction(t('Save the script?'), t('Write {name} to the policies folder and reload the gateway? Requests use it at once.', { name }), t('Save')))) return;
    fill(out);
    try {
      const r = await api(path(name), { method: 'PUT', body: { source: source.value } });
      if (!scripts.includes(name)) scripts.push(name);
      scripts.sort();
      current = { name, isNew: false, loaded: source.value };
      markDirty();
      if (r.applied) {
        toast(r.message);
        fill(out, h('p', { class: 'ok', id: 'editor-saved' }, r.message));
      } else {
        showErrors(r.reload.errors.map((e) => ({ line: null, message: `${e.file}${e.line ? `:${e.line}` : ''}: ${e.message}` })), r.message);
      }
      onSaved();
    } catch (e) {
      showFailure(e);
    }
  }

  async function remove() {
    const { name } = current;
    if (!(await confirmAction(t('Delete the script?'), t('Delete {name} from the policies folder and reload the gateway?', { name }), t('Delete')))) return;
    fill(out);
    try {
      if (current.isNew) {
        toast(t('{name} was never saved', { name }));
      } else {
        const r = await api(path(name), { method: 'DELETE' });
        toast(r.message);
      }
      const at = scripts.indexOf(name);
      if (at >= 0) scripts.splice(at, 1);
      options(scripts, scripts[0]);
      if (scripts.length) open(scripts[0]);
      else {
        current = { name: '', isNew: false, loaded: '' };
        source.value = '';
        renderGutter();
        markDirty();
      }
      onSaved();
    } catch (e) {
      fill(out, errorBox(e));
    }
  }

  async function create() {
    const input = h('input', { id: 'editor-new-name', placeholder: '50-my-rule.rhai', value: '' });
    const ok = await modal(t('New script'), h('label', {}, t('File name (letters, digits, - _ . ; ends in .rhai; scripts run in name order)'), input), [
      { label: t('Cancel'), value: false, class: 'ghost', id: 'editor-new-cancel' },
      { label: t('Create'), value: true, id: 'editor-new-ok' },
    ]);
    let name = input.value.trim();
    if (!ok || !name) return;
    if (!name.endsWith('.rhai')) name += '.rhai';
    if (scripts.includes(name)) {
      toast(t('{name} exists; it is open now', { name }));
      options(scripts, name);
      open(name);
      return;
    }
    options(scripts.concat([name]).sort(), name);
    current = { name, isNew: true, loaded: '' };
    source.value = TEMPLATE;
    errorLines = new Set();
    fill(out);
    renderGutter();
    markDirty();
    source.focus();
  }

  // The draft as the API takes it; `null` when there is no script to edit.
  function draft() {
    return current.name ? { name: current.name, source: source.value } : null;
  }

  const card = h('section', { class: 'card', id: 'policy-editor' },
    h('div', { class: 'row between' }, h('h2', {}, t('Edit a script')), state),
    h('div', { class: 'row' },
      h('label', { class: 'grow' }, t('Script'), select),
      writable ? button('editor-new', t('New script'), create, 'ghost') : null,
    ),
    h('div', { class: 'code-editor' }, gutter, h('div', { class: 'code-area' }, shade, source)),
    h('div', { class: 'row' },
      button('editor-validate', t('Validate'), validate),
      button('editor-test', t('Run fixtures'), runFixtures, 'ghost'),
      writable ? button('editor-save', t('Save'), save) : null,
      writable ? button('editor-delete', t('Delete'), remove, 'danger') : null,
      writable ? null : h('span', { class: 'muted', id: 'editor-read-only' }, t('Read-only (--read-only-policies): drafts can be checked and simulated, not saved.')),
    ),
    h('p', { class: 'muted' }, t('Validate compiles the draft as a reload would; Run fixtures runs policies/tests with the draft in place of the saved script; the simulator below uses the draft when "Use the draft" is ticked.')),
    out,
  );
  options(scripts, scripts[0]);
  if (scripts.length) open(scripts[0]);
  else renderGutter();
  return { card, draft, open: (name) => { options(scripts, name); open(name); card.scrollIntoView({ block: 'start' }); } };
}
