// The shell: sign-in, navigation between pages (the URL hash), sign-out.

import { api, getKey, setKey, clearKey, setUnauthorizedHandler } from './api.js';
import { pages } from './pages.js';
import { t, getLang, setLang, LANGUAGES, translateStatic } from './i18n.js';
import { THEMES, getTheme, setTheme, applyTheme } from './theme.js';
import { h, fill } from './ui.js';

const $ = (id) => document.getElementById(id);
let current = null; // { cleanup }

function showSignin(message = '') {
  current?.cleanup?.();
  current = null;
  $('shell').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('signin-key').focus();
}

async function route() {
  if (!getKey()) return showSignin();
  $('signin').hidden = true;
  $('shell').hidden = false;
  const name = (location.hash.replace(/^#\/?/, '').split('?')[0] || 'overview').toLowerCase();
  const page = pages[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  current?.cleanup?.();
  $('toast').hidden = true;
  const main = $('main');
  main.replaceChildren();
  main.dataset.page = page;
  document.title = `${t(page[0].toUpperCase() + page.slice(1))} · Switchboard`;
  const ctx = { cleanups: [] };
  current = { cleanup: () => ctx.cleanups.forEach((f) => f()) };
  try {
    await pages[page](main, ctx);
  } catch (e) {
    console.warn(e);
  }
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('signin-key').value.trim();
  const button = $('signin-submit');
  button.disabled = true;
  $('signin-error').textContent = '';
  try {
    await api('/admin/config', { key });
    setKey(key);
    $('signin-key').value = '';
    if (!location.hash) location.hash = '#/overview';
    await route();
  } catch (err) {
    $('signin-error').textContent =
      err.status === 403 ? t('That key is not an admin key.') : err.status === 401 ? t('That key is not valid.') : err.message;
  } finally {
    button.disabled = false;
  }
});

$('signout').addEventListener('click', () => {
  clearKey();
  showSignin(t('Signed out.'));
});

setUnauthorizedHandler(() => {
  clearKey();
  showSignin(t('Your key is no longer valid; sign in again.'));
});

// The header's language and theme switches; a change of language draws the page again (the
// forms keep what was typed: forms.js).
const langSelect = $('lang-select');
const themeSelect = $('theme-select');
function drawPrefs() {
  fill(langSelect, LANGUAGES.map(([v, label]) => h('option', { value: v, lang: v === 'zh' ? 'zh-CN' : 'en' }, label)));
  langSelect.value = getLang();
  const labels = { system: t('Theme: system'), light: t('Theme: light'), dark: t('Theme: dark') };
  fill(themeSelect, THEMES.map((v) => h('option', { value: v }, labels[v])));
  themeSelect.value = getTheme();
  translateStatic();
}
langSelect.addEventListener('change', () => {
  setLang(langSelect.value);
  drawPrefs();
  if (getKey()) route();
});
themeSelect.addEventListener('change', () => setTheme(themeSelect.value));
// The skip link focuses the page's content without touching the URL hash (the router's).
$('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  $('main').focus();
});
applyTheme();
drawPrefs();

window.addEventListener('hashchange', route);
route();
