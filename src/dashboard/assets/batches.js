// The Batches page: every key's batches with their progress and cost so far, their output and
// error files to download, and cancel. All from the admin API (`/admin/batches`).

import { api } from './api.js';
import { t } from './i18n.js';
import { h, dateTime, usd, toast, confirmAction, table, errorBox, fill } from './ui.js';

const FINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

// The statuses as shown (literal keys, so the catalogs' test sees every one).
function statusText(status) {
  return {
    validating: t('validating'),
    failed: t('failed'),
    in_progress: t('in progress'),
    finalizing: t('finalizing'),
    completed: t('completed'),
    expired: t('expired'),
    cancelling: t('cancelling'),
    cancelled: t('cancelled'),
  }[status] ?? status;
}

// Downloads a file through the admin API (the key goes in a header, never in a URL).
async function download(fileId, name) {
  const res = await api(`/admin/files/${encodeURIComponent(fileId)}/content`, { raw: true });
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
  const url = URL.createObjectURL(await res.blob());
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function progress(b) {
  const c = b.request_counts;
  const done = c.completed + c.failed;
  const bar = h('progress', {
    max: String(Math.max(c.total, 1)),
    value: String(done),
    'aria-label': t('{done} of {total} requests answered', { done, total: c.total }),
  });
  return h('span', { class: 'limit-bar' }, bar, ` ${done} / ${c.total}`,
    c.failed ? h('span', { class: 'muted' }, ` ${t('({n} failed)', { n: c.failed })}`) : null);
}

function fileButton(id, label, name) {
  if (!id) return null;
  const button = h('button', { type: 'button', class: 'ghost small', 'data-file': id }, label);
  button.addEventListener('click', async (e) => {
    e.stopPropagation();
    try {
      await download(id, name);
    } catch (err) {
      toast(t('Download failed: {message}', { message: err.message }));
    }
  });
  return button;
}

export async function batchesPage(main, ctx) {
  const list = h('div', { id: 'batches-list' }, h('p', { class: 'muted' }, t('Loading…')));
  main.append(
    h('h1', {}, t('Batches')),
    h('p', { class: 'muted' }, t('Batches run by the gateway (OpenAI\'s Batch API, /v1/batches): each line goes through the pipeline as the batch\'s key, behind live traffic.')),
    h('section', { class: 'card' }, h('h2', {}, t('All batches')), list),
  );

  async function cancel(b) {
    if (!(await confirmAction(t('Cancel batch?'), t('No new request of {id} is sent; those in flight finish, and the batch is finalized with what completed.', { id: b.id }), t('Cancel batch')))) return;
    try {
      await api(`/admin/batches/${encodeURIComponent(b.id)}/cancel`, { method: 'POST' });
      toast(t('Cancelling {id}', { id: b.id }));
    } catch (e) {
      toast(e.message);
    }
    await load();
  }

  async function load() {
    let res;
    try {
      res = await api('/admin/batches');
    } catch (e) {
      fill(list, errorBox(e));
      return;
    }
    fill(list, table(
      [
        { label: t('Batch'), render: (b) => h('code', {}, b.id) },
        { label: t('Key'), render: (b) => h('code', {}, b.key_id) },
        { label: t('Endpoint'), key: 'endpoint' },
        { label: t('Status'), render: (b) => h('span', { class: `pill status-${b.status}` }, statusText(b.status)) },
        { label: t('Progress'), render: progress },
        { label: t('Cost so far'), num: true, render: (b) => usd(b.cost_usd) },
        { label: t('Created'), render: (b) => dateTime(b.created_at) },
        {
          label: t('Files'),
          render: (b) => h('span', { class: 'row' },
            fileButton(b.output_file_id, t('Output'), `${b.id}_output.jsonl`),
            fileButton(b.error_file_id, t('Errors'), `${b.id}_errors.jsonl`)),
        },
        {
          label: t('Actions'),
          render: (b) => {
            if (FINAL.has(b.status) || b.status === 'cancelling' || b.status === 'finalizing') return null;
            const button = h('button', { type: 'button', class: 'danger small', 'data-cancel': b.id }, t('Cancel'));
            button.addEventListener('click', () => cancel(b));
            return button;
          },
        },
      ],
      res.data,
      { empty: t('No batches yet. Create one with POST /v1/files and POST /v1/batches (the OpenAI SDK works).'), caption: t('All batches') },
    ));
  }

  const timer = setInterval(() => !document.hidden && load(), 3000);
  ctx.cleanups.push(() => clearInterval(timer));
  await load();
}
