// The dashboard's CSV export (src/dashboard/assets/csv.js): `node --test tests/dashboard/`.

import test from 'node:test';
import assert from 'node:assert/strict';
import { csv, csvCell } from '../../src/dashboard/assets/csv.js';

test('cells a spreadsheet would run as formulas are made text', () => {
  assert.equal(csvCell('=HYPERLINK("http://x","y")'), `"'=HYPERLINK(""http://x"",""y"")"`);
  assert.equal(csvCell('+1+1'), "'+1+1");
  assert.equal(csvCell('-2+3'), "'-2+3");
  assert.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
  assert.equal(csvCell('\t=1+1'), "'\t=1+1");
  assert.equal(csvCell('\r=1+1'), `"'\r=1+1"`);
});

test('ordinary cells are left alone, and quoted only when they must be', () => {
  assert.equal(csvCell('mock/echo'), 'mock/echo');
  assert.equal(csvCell('a=b'), 'a=b', 'only the first character counts');
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('two\nlines'), '"two\nlines"');
  assert.equal(csvCell(null), '');
  assert.equal(csvCell(undefined), '');
  assert.equal(csvCell(''), '');
});

test('numbers stay numbers, negative ones included', () => {
  assert.equal(csvCell(0), '0');
  assert.equal(csvCell(-1.5), '-1.5');
  assert.equal(csvCell(0.000123), '0.000123');
});

test('rows become lines', () => {
  assert.equal(
    csv([['group', 'requests'], ['=cmd|calc', 3], ['mock/echo', 1]]),
    "group,requests\n'=cmd|calc,3\nmock/echo,1\n",
  );
});
