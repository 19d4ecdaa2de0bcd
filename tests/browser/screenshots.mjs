// Regenerate the screenshots of the docs: the lobby, a four-party room, and a direct call
// (bob's incoming-call screen, then the 1:1 call view) at 1280x800.
// Run by `tests/browser/run.sh --screenshots` (inside the loopback-only namespace).
// Output: docs/screenshots/{lobby,room-4,call-incoming,call-1to1}.png (or $SCREENSHOT_DIR).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, scope, openCall, expectMesh, ROOT, sleep, waitFor } from './harness.mjs';

const OUT = process.env.SCREENSHOT_DIR || path.join(ROOT, 'docs/screenshots');
const viewport = { width: 1280, height: 800 };
// Same clock format and language whatever the machine's settings.
const contextOptions = { locale: 'en-US', timezoneId: 'UTC', colorScheme: 'dark' };
mkdirSync(OUT, { recursive: true });

const browser = await launchBrowser();
try {
  await scope('screenshots', async (s) => {
    const server = await s.server();
    const lobby = await s.openPage(browser, server, '/', { name: 'lobby', viewport, contextOptions });
    await lobby.page.evaluate(() => document.fonts && document.fonts.ready);
    await sleep(300);
    await lobby.page.screenshot({ path: path.join(OUT, 'lobby.png') });

    const ps = await openCall(s, browser, server, 'demo', ['Ada', 'Bob', 'Cleo', 'Dan'], { viewport, contextOptions });
    await expectMesh(ps);
    const ada = ps[0];
    await ada.chat('Hi all, can you hear me?');
    await ps[1].waitChat('Hi all, can you hear me?');
    await ps[1].chat('Loud and clear!');
    await ada.waitChat('Loud and clear!');
    await sleep(1500); // let the connection panels show their first stats
    await ada.page.mouse.move(0, 0);
    await ada.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await ada.page.screenshot({ path: path.join(OUT, 'room-4.png') });
  });
  await scope('screenshots-calls', async (s) => {
    const server = await s.server({ args: ['--call-domain', 'example.org'] });
    const [ada, bob] = await Promise.all(['ada', 'bob'].map(async (user) => {
      const p = await s.openPage(browser, server, `/?user=${user}&name=${user === 'ada' ? 'Ada' : 'Bob'}`, { name: user, viewport, contextOptions });
      await p.page.waitForFunction(() => window.sbApp && window.sbApp.line && window.sbApp.line.callsPeer);
      return p;
    }));
    await ada.page.getByLabel('Call someone').fill('bob');
    await ada.page.getByRole('button', { name: 'Call', exact: true }).click();
    await bob.page.getByRole('alertdialog').waitFor({ state: 'visible' });
    await sleep(300);
    await bob.page.screenshot({ path: path.join(OUT, 'call-incoming.png') });
    await bob.page.getByRole('button', { name: 'Accept' }).click();
    await waitFor(() => ada.page.evaluate(() => [...document.querySelectorAll('.tile.remote video')].some((v) => v.videoWidth > 0)), { timeout: 20000, what: 'ada sees bob' });
    await sleep(1000);
    await ada.page.mouse.move(0, 0);
    await ada.page.screenshot({ path: path.join(OUT, 'call-1to1.png') });
  });
  console.log(`screenshots written to ${OUT}: lobby.png room-4.png call-incoming.png call-1to1.png`);
} finally {
  await browser.close();
}
