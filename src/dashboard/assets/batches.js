// The Batches page: every key's batches with their progress and cost so far, their output and
// error files to download, and cancel. All from the admin API (`/admin/batches`).

import { api } from './api.js';
import { h, dateTime, usd, toast, confirmAction, table, errorBox, fill } from './ui.js';

const FINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

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
  const bar = h('progress', { max: String(Math.max(c.total, 1)), value: String(done), 'aria-label': `${done} of ${c.total} requests answered` });
  return h('span', { class: 'limit-bar' }, bar, ` ${done} / ${c.total}`, c.failed ? h('span', { class: 'muted' }, ` (${c.failed} failed)`) : null);
}

function fileButton(id, label, name) {
  if (!id) return null;
  const button = h('button', { type: 'button', class: 'ghost small', 'data-file': id }, label);
  button.addEventListener('click', async (e) => {
    e.stopPropagation();
    try {
      await download(id, name);
    } catch (err) {
      toast(`Download failed: ${err.message}`);
    }
  });
  return button;
}

export async function batchesPage(main, ctx) {
  const list = h('div', { id: 'batches-list' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(
    h('h1', {}, 'Batches'),
    h('p', { class: 'muted' }, 'Batches run by the gateway (OpenAI\'s Batch API, /v1/batches): each line goes through the pipeline as the batch\'s key, behind live traffic.'),
    h('section', { class: 'card' }, h('h2', {}, 'All batches'), list),
  );

  async function cancel(b) {
    if (!(await confirmAction('Cancel batch?', `No new request of ${b.id} is sent; those in flight finish, and the batch is finalized with what completed.`, 'Cancel batch'))) return;
    try {
      await api(`/admin/batches/${encodeURIComponent(b.id)}/cancel`, { method: 'POST' });
      toast(`Cancelling ${b.id}`);
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
        { label: 'Batch', render: (b) => h('code', {}, b.id) },
        { label: 'Key', render: (b) => h('code', {}, b.key_id) },
        { label: 'Endpoint', key: 'endpoint' },
        { label: 'Status', render: (b) => h('span', { class: `pill status-${b.status}` }, b.status) },
        { label: 'Progress', render: progress },
        { label: 'Cost so far', num: true, render: (b) => usd(b.cost_usd) },
        { label: 'Created', render: (b) => dateTime(b.created_at) },
        {
          label: 'Files',
          render: (b) => h('span', { class: 'row' },
            fileButton(b.output_file_id, 'Output', `${b.id}_output.jsonl`),
            fileButton(b.error_file_id, 'Errors', `${b.id}_errors.jsonl`)),
        },
        {
          label: '',
          render: (b) => {
            if (FINAL.has(b.status) || b.status === 'cancelling' || b.status === 'finalizing') return null;
            const button = h('button', { type: 'button', class: 'danger small', 'data-cancel': b.id }, 'Cancel');
            button.addEventListener('click', () => cancel(b));
            return button;
          },
        },
      ],
      res.data,
      { empty: 'No batches yet. Create one with POST /v1/files and POST /v1/batches (the OpenAI SDK works).' },
    ));
  }

  const timer = setInterval(() => !document.hidden && load(), 3000);
  ctx.cleanups.push(() => clearInterval(timer));
  await load();
}
