// Themes: light, dark, or the system's (the default). The choice is kept in localStorage and
// set as `data-theme` on <html>, which app.css reads; "system" removes it so the
// prefers-color-scheme media query decides.

const STORAGE = 'switchboard.theme';
export const THEMES = ['system', 'light', 'dark'];

export function getTheme() {
  const saved = localStorage.getItem(STORAGE);
  return THEMES.includes(saved) ? saved : 'system';
}

export function applyTheme(theme = getTheme()) {
  const root = document.documentElement;
  if (theme === 'system') root.removeAttribute('data-theme');
  else root.dataset.theme = theme;
}

export function setTheme(theme) {
  if (!THEMES.includes(theme)) return;
  localStorage.setItem(STORAGE, theme);
  applyTheme(theme);
}
