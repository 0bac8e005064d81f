// The Teams page: create a team with its limits, list teams with their keys, edit, delete.

import { api, ApiError } from './api.js';
import { limitFields, limitsPills, limitsWithUse } from './limits.js';
import { h, dateTime, toast, modal, confirmAction, table, errorBox, fill } from './ui.js';
import { t } from './i18n.js';

// Team names by id, for the other pages; empty when they cannot be read.
export async function teamNames() {
  try {
    const res = await api('/admin/teams');
    return new Map(res.data.map((team) => [team.id, team.name]));
  } catch {
    return new Map();
  }
}

// A <select> of the teams, `current` selected; "no team" first.
export function teamSelect(id, teams, current) {
  const known = teams.some(([tid]) => tid === current);
  return h('select', { id },
    h('option', { value: '' }, t('no team')),
    teams.map(([tid, name]) => h('option', { value: tid, selected: tid === current }, name)),
    current && !known ? h('option', { value: current, selected: true }, t('{id} (unknown)', { id: current })) : null,
  );
}

export async function teamsPage(main) {
  const name = h('input', { id: 'team-name', required: true, placeholder: 'research', maxlength: '100' });
  const limits = limitFields('team');
  const formError = h('p', { class: 'error', role: 'alert' });
  const list = h('div', { id: 'teams-list' }, h('p', { class: 'muted' }, t('Loading…')));
  const form = h('form', { class: 'card', id: 'team-create' },
    h('h2', {}, t('Create a team')),
    h('div', { class: 'row' }, h('label', { class: 'grow' }, t('Name'), name)),
    h('h3', {}, t('Limits and budgets')),
    h('p', { class: 'muted' }, t('Shared by the keys of the team; the limits of each key apply as well. Empty: no limit.')),
    limits.el,
    h('div', { class: 'row end' }, h('button', { type: 'submit', id: 'team-create-submit' }, t('Create'))),
    formError,
  );
  main.append(h('h1', {}, t('Teams')), form, h('section', { class: 'card' }, h('h2', {}, t('All teams')), list));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.textContent = '';
    try {
      const body = { name: name.value.trim(), limits: limits.read() };
      const created = await api('/admin/teams', { method: 'POST', body });
      form.reset();
      toast(t('Created {name}', { name: created.name }));
      await load();
    } catch (err) {
      formError.textContent = err.message;
    }
  });

  async function edit(team) {
    const n = h('input', { id: 'edit-team-name', value: team.name, maxlength: '100' });
    const fields = limitFields('edit-team', team.limits);
    const err = h('p', { class: 'error' });
    for (;;) {
      const ok = await modal(t('Edit {name}', { name: team.name }), h('div', {},
        h('div', { class: 'row' }, h('label', { class: 'grow' }, t('Name'), n)),
        h('h3', {}, t('Limits and budgets (empty: no limit)')),
        fields.el,
        err,
      ), [{ label: t('Cancel'), value: false, class: 'ghost' }, { label: t('Save'), value: true, id: 'edit-team-save' }]);
      if (!ok) return;
      try {
        await api(`/admin/teams/${encodeURIComponent(team.id)}`, { method: 'PATCH', body: { name: n.value.trim(), limits: fields.read() } });
        toast(t('Saved {name}', { name: n.value.trim() }));
        return load();
      } catch (e) {
        err.textContent = e.message;
      }
    }
  }

  async function remove(team) {
    if (!(await confirmAction(t('Delete team?'), t('"{name}" ({id}) and its limits are deleted. A team that keys still belong to cannot be deleted.', { name: team.name, id: team.id }), t('Delete')))) return;
    try {
      await api(`/admin/teams/${encodeURIComponent(team.id)}`, { method: 'DELETE' });
      toast(t('Deleted {name}', { name: team.name }));
      await load();
    } catch (e) {
      toast(e instanceof ApiError && e.status === 409 ? t('{name} still has keys: move them to another team or revoke them first.', { name: team.name }) : e.message);
    }
  }

  async function load() {
    try {
      const [teams, keys] = await Promise.all([api('/admin/teams'), api('/admin/keys')]);
      const keyNames = new Map(keys.data.map((k) => [k.id, k.name]));
      fill(list, table(
        [
          { label: t('Name'), render: (tm) => [h('strong', {}, tm.name), h('div', { class: 'muted mono' }, tm.id)] },
          { label: t('Limits'), render: (tm) => limitsWithUse(tm.limits, tm.limit_use) },
          { label: t('Keys'), render: (tm) => (tm.keys.length ? h('div', { class: 'pill-list' }, tm.keys.map((id) => h('code', { title: id }, keyNames.get(id) || id))) : h('span', { class: 'muted' }, t('none'))) },
          { label: t('Created'), class: 'hide-sm', render: (tm) => dateTime(tm.created_at) },
          {
            label: '',
            render: (tm) => h('div', { class: 'row' },
              h('button', { type: 'button', class: 'ghost small', dataset: { action: 'edit-team', id: tm.id }, onclick: () => edit(tm) }, t('Edit')),
              h('button', { type: 'button', class: 'danger small', dataset: { action: 'delete-team', id: tm.id }, onclick: () => remove(tm) }, t('Delete')),
            ),
          },
        ],
        teams.data,
        { empty: t('No teams yet.'), rowClass: (tm) => `team-row team-${tm.id}` },
      ));
    } catch (e) {
      fill(list, errorBox(e));
    }
  }
  await load();
}
