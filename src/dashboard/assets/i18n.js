// Languages: every string the dashboard shows comes from one catalog per language
// (lang-en.js, lang-zh.js) through `t(key)`. The key is the English text (gettext style), so
// a page reads naturally in the source; the English catalog still lists every key, and
// tests/dashboard/i18n.test.mjs fails when a key used anywhere is missing from either one.
// The language follows the browser at first; the header's switch keeps the choice in
// localStorage. Numbers, dates and money are formatted for the language's locale.

import { en } from './lang-en.js';
import { zh } from './lang-zh.js';

export const CATALOGS = { en, zh };
export const LANGUAGES = [['en', 'English'], ['zh', '简体中文']];
const STORAGE = 'switchboard.lang';
const LOCALES = { en: 'en-US', zh: 'zh-CN' };

// Outside a browser (the Node unit tests) there is no storage and no navigator: English.
function detect() {
  const saved = globalThis.localStorage?.getItem(STORAGE);
  if (CATALOGS[saved]) return saved;
  return /^zh\b/i.test(globalThis.navigator?.language || '') ? 'zh' : 'en';
}

let lang = detect();

export const getLang = () => lang;
export const locale = () => LOCALES[lang];

export function setLang(next) {
  if (!CATALOGS[next]) return;
  lang = next;
  globalThis.localStorage?.setItem(STORAGE, next);
  if (globalThis.document) document.documentElement.lang = locale();
}

// The text for `key` in the current language, with `{name}` replaced from `params`. A key
// missing from the catalog shows as itself and is reported on the console, where the browser
// test sees it.
export function t(key, params) {
  let text = CATALOGS[lang][key];
  if (text === undefined) {
    console.warn(`i18n: "${key}" is missing from the ${lang} catalog`);
    text = key;
  }
  if (params) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  return text;
}

// Elements of the static page (index.html) carry their key: `data-i18n` for the text,
// `data-i18n-<attr>` for an attribute (aria-label, placeholder, title).
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const attr of ['aria-label', 'placeholder', 'title']) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
  }
  document.documentElement.lang = locale();
}
