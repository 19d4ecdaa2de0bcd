// A node:test reporter that writes the summary run.sh prints: tests passed, verdicts
// failed, and harness failures (a test whose error, or whose before-hook's error,
// starts with "harness failure:"; see chromium.mjs) counted apart, each named.
// Tests marked todo, and skipped ones, are not counted.

const firstLine = (s) => String(s || '').split('\n')[0];

export default async function* summary(source) {
  let passed = 0;
  let failed = 0;
  const harness = [];
  for await (const ev of source) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    const d = ev.data;
    if (d.todo || d.skip || (d.details && d.details.type === 'suite')) continue;
    if (ev.type === 'test:pass') {
      passed++;
      continue;
    }
    const err = d.details && d.details.error;
    const msg = firstLine((err && err.cause && err.cause.message) || (err && err.message));
    if (/^harness failure:/.test(msg)) harness.push(`${d.name}: ${msg}`);
    else failed++;
  }
  yield `browser: ${passed} passed, ${failed} failed, ${harness.length} harness failures\n`;
  for (const h of harness) yield `harness failure in ${h}\n`;
}
