// Unit check of the verdict comparison in matrix-doc.mjs on the committed table itself
// (no lab, no Chromium): `node --test tests/nat/matrix-doc.test.mjs`.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { verdictDiff, verdictRows } from './matrix-doc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const saved = readFileSync(path.join(HERE, '../../docs/nat-matrix.md'), 'utf8');
const lines = saved.split('\n');
const rowOf = (name) => lines.findIndex((l) => l.startsWith(`| ${name} |`));
const edit = (name, f) => lines.map((l, i) => (i === rowOf(name) ? f(l) : l)).join('\n');

test('the saved table has both tables and agrees with itself', () => {
  const rows = verdictRows(saved);
  assert.ok([...rows.keys()].filter((k) => k.startsWith('case: ')).length >= 30, 'every case row parsed');
  assert.ok([...rows.keys()].filter((k) => k.startsWith('client: ')).length >= 5, 'every network-test row parsed');
  assert.deepEqual(verdictDiff(saved, saved), []);
});

test('timings, the header and race-dependent columns do not count', () => {
  let other = edit('open-open-stun', (l) => l.replace('| 1.1 s |', '| 7.3 s |').replace('host ↔ host', 'prflx ↔ host'));
  other = other.replace(/Last run: .*/, 'Last run: 2030-01-01 00:00 UTC, Chromium 999, 30 cases,');
  const failedCase = lines.find((l) => / \| failed \(after [0-9.]+ s\) \|/.test(l));
  assert.ok(failedCase, 'the saved table has a failed case with its time');
  other = other.replace(failedCase, failedCase.replace(/\(after [0-9.]+ s\)/, '(after 99.9 s)'));
  assert.deepEqual(verdictDiff(other, saved), []);
});

test('a changed verdict, outcome or prediction is a difference, shown both ways', () => {
  const changed = edit('open-open-stun', (l) => l.replace(/\| yes \|$/, '| **no**: nothing decoded |'));
  const diff = verdictDiff(changed, saved);
  assert.equal(diff.length, 2);
  assert.match(diff[0], /^- open-open-stun .*\| yes$/);
  assert.match(diff[1], /^\+ open-open-stun .*\*\*no\*\*: nothing decoded$/);
  const outcome = edit('open-open-stun', (l) => l.replace('| connected |', '| no result |'));
  assert.equal(verdictDiff(outcome, saved).length, 2);
  const page = edit('symmetric', (l) => l.replace('| address-and-port-dependent | address-and-port-dependent |', '| endpoint-independent | address-and-port-dependent |'));
  assert.equal(verdictDiff(page, saved).length, 2);
});

test('a missing row fails a full run but not a partial one; an extra row fails both', () => {
  const fewer = lines.filter((_, i) => i !== rowOf('open-open-stun')).join('\n');
  assert.deepEqual(verdictDiff(fewer, saved), ['- open-open-stun | open (no NAT) | open (no NAT) | STUN | connects | connected | yes', '+ (not in this run)']);
  assert.deepEqual(verdictDiff(fewer, saved, { partial: true }), []);
  const more = saved.replace(/(\| open-open-stun .*\n)/, '$1| new-case-stun | x | y | STUN | connects | connected | – | – | – | yes |\n');
  assert.equal(verdictDiff(more, saved, { partial: true }).length, 2);
  assert.equal(verdictDiff('no tables at all\n', saved, { partial: true }).length, 1);
});
