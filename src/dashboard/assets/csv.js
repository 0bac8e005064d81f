// CSV for spreadsheets: RFC 4180 quoting, and no formulas. A spreadsheet runs a cell that
// starts with `=`, `+`, `-` or `@` (or a tab or carriage return, which it strips first) as a
// formula, and the usage rows hold names chosen elsewhere (key names, tags, models): as OWASP
// recommends for CSV injection, such a text cell gets a leading `'`, which makes it plain text.
// Numbers stay numbers (a negative number is not a formula).

const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(value) {
  if (value === null || value === undefined) return '';
  let s = String(value);
  if (typeof value !== 'number' && FORMULA_START.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// Rows (arrays of cells) as CSV text, one line each.
export function csv(rows) {
  return rows.map((r) => r.map(csvCell).join(',')).join('\n') + '\n';
}
