// Rhai syntax highlighting for the policy editor: the text split into tokens, each a text node
// or a <span class="tok-…">, never HTML (so the page's CSP and the no-markup rule hold).
// It only colours; the gateway alone says whether a script is valid.

import { h } from './ui.js';

const KEYWORDS = new Set([
  'fn', 'let', 'const', 'if', 'else', 'switch', 'while', 'loop', 'for', 'in', 'do', 'until',
  'break', 'continue', 'return', 'throw', 'try', 'catch', 'true', 'false', 'this', 'private',
  'import', 'export', 'as', 'global',
]);
// The names a hook is given, as the policies README calls them.
const SCRIPT_VARS = new Set(['req', 'ctx', 'res']);

// One token per match, in order: comments, strings, numbers, words, anything else.
const TOKEN = /(\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$))|("(?:[^"\\\n]|\\.)*"?|`(?:[^`\\]|\\.)*`?|'(?:[^'\\\n]|\\.)*'?)|(\b\d[\d_]*(?:\.\d[\d_]*)?(?:e[+-]?\d+)?\b|\b0x[\da-f_]+\b)|([A-Za-z_]\w*)|([\s\S])/gi;

// `text` as nodes for a <pre>.
export function highlight(text) {
  const out = [];
  let plain = '';
  const flush = () => {
    if (plain) out.push(plain);
    plain = '';
  };
  const tok = (cls, t) => {
    flush();
    out.push(h('span', { class: cls }, t));
  };
  for (const m of text.matchAll(TOKEN)) {
    const [t, comment, string, number, word] = m;
    if (comment) tok('tok-com', t);
    else if (string) tok('tok-str', t);
    else if (number) tok('tok-num', t);
    else if (word && KEYWORDS.has(word)) tok('tok-kw', t);
    else if (word && SCRIPT_VARS.has(word)) tok('tok-var', t);
    else if (word && text[m.index + t.length] === '(') tok('tok-fn', t);
    else plain += t;
  }
  flush();
  // A <pre> drops a last empty line; the textarea shows it.
  out.push('\n ');
  return out;
}
