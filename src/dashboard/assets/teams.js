// The Teams page: create a team with its limits, list teams with their keys, edit, delete.

import { api, ApiError } from './api.js';
import { limitFields, limitsPills, limitsWithUse } from './limits.js';
import { h, dateTime, toast, modal, confirmAction, table, errorBox, fill } from './ui.js';

// Team names by id, for the other pages; empty when they cannot be read.
export async function teamNames() {
  try {
    const res = await api('/admin/teams');
    return new Map(res.data.map((t) => [t.id, t.name]));
  } catch {
    return new Map();
  }
}

// A <select> of the teams, `current` selected; "no team" first.
export function teamSelect(id, teams, current) {
  const known = teams.some(([tid]) => tid === current);
  return h('select', { id },
    h('option', { value: '' }, 'no team'),
    teams.map(([tid, name]) => h('option', { value: tid, selected: tid === current }, name)),
    current && !known ? h('option', { value: current, selected: true }, `${current} (unknown)`) : null,
  );
}

export async function teamsPage(main) {
  const name = h('input', { id: 'team-name', required: true, placeholder: 'research', maxlength: '100' });
  const limits = limitFields('team');
  const formError = h('p', { class: 'error', role: 'alert' });
  const list = h('div', { id: 'teams-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const form = h('form', { class: 'card', id: 'team-create' },
    h('h2', {}, 'Create a team'),
    h('div', { class: 'row' }, h('label', { class: 'grow' }, 'Name', name)),
    h('h3', {}, 'Limits and budgets'),
    h('p', { class: 'muted' }, 'Shared by the keys of the team; the limits of each key apply as well. Empty: no limit.'),
    limits.el,
    h('div', { class: 'row end' }, h('button', { type: 'submit', id: 'team-create-submit' }, 'Create')),
    formError,
  );
  main.append(h('h1', {}, 'Teams'), form, h('section', { class: 'card' }, h('h2', {}, 'All teams'), list));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.textContent = '';
    try {
      const body = { name: name.value.trim(), limits: limits.read() };
      const created = await api('/admin/teams', { method: 'POST', body });
      form.reset();
      toast(`Created ${created.name}`);
      await load();
    } catch (err) {
      formError.textContent = err.message;
    }
  });

  async function edit(t) {
    const n = h('input', { id: 'edit-team-name', value: t.name, maxlength: '100' });
    const fields = limitFields('edit-team', t.limits);
    const err = h('p', { class: 'error' });
    for (;;) {
      const ok = await modal(`Edit ${t.name}`, h('div', {},
        h('div', { class: 'row' }, h('label', { class: 'grow' }, 'Name', n)),
        h('h3', {}, 'Limits and budgets (empty: no limit)'),
        fields.el,
        err,
      ), [{ label: 'Cancel', value: false, class: 'ghost' }, { label: 'Save', value: true, id: 'edit-team-save' }]);
      if (!ok) return;
      try {
        await api(`/admin/teams/${encodeURIComponent(t.id)}`, { method: 'PATCH', body: { name: n.value.trim(), limits: fields.read() } });
        toast(`Saved ${n.value.trim()}`);
        return load();
      } catch (e) {
        err.textContent = e.message;
      }
    }
  }

  async function remove(t) {
    if (!(await confirmAction('Delete team?', `"${t.name}" (${t.id}) and its limits are deleted. A team that keys still belong to cannot be deleted.`, 'Delete'))) return;
    try {
      await api(`/admin/teams/${encodeURIComponent(t.id)}`, { method: 'DELETE' });
      toast(`Deleted ${t.name}`);
      await load();
    } catch (e) {
      toast(e instanceof ApiError && e.status === 409 ? `${t.name} still has keys: move them to another team or revoke them first.` : e.message);
    }
  }

  async function load() {
    try {
      const [teams, keys] = await Promise.all([api('/admin/teams'), api('/admin/keys')]);
      const keyNames = new Map(keys.data.map((k) => [k.id, k.name]));
      fill(list, table(
        [
          { label: 'Name', render: (t) => [h('strong', {}, t.name), h('div', { class: 'muted mono' }, t.id)] },
          { label: 'Limits', render: (t) => limitsWithUse(t.limits, t.limit_use) },
          { label: 'Keys', render: (t) => (t.keys.length ? h('div', { class: 'pill-list' }, t.keys.map((id) => h('code', { title: id }, keyNames.get(id) || id))) : h('span', { class: 'muted' }, 'none')) },
          { label: 'Created', class: 'hide-sm', render: (t) => dateTime(t.created_at) },
          {
            label: '',
            render: (t) => h('div', { class: 'row' },
              h('button', { type: 'button', class: 'ghost small', dataset: { action: 'edit-team', id: t.id }, onclick: () => edit(t) }, 'Edit'),
              h('button', { type: 'button', class: 'danger small', dataset: { action: 'delete-team', id: t.id }, onclick: () => remove(t) }, 'Delete'),
            ),
          },
        ],
        teams.data,
        { empty: 'No teams yet.', rowClass: (t) => `team-row team-${t.id}` },
      ));
    } catch (e) {
      fill(list, errorBox(e));
    }
  }
  await load();
}
