// Regenerate the screenshots of the docs: the lobby and a four-party room at 1280x800.
// Run by `tests/browser/run.sh --screenshots` (inside the loopback-only namespace).
// Output: docs/screenshots/lobby.png, docs/screenshots/room-4.png (or $SCREENSHOT_DIR).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, scope, openCall, expectMesh, ROOT, sleep } from './harness.mjs';

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
  console.log(`screenshots written to ${OUT}: lobby.png room-4.png`);
} finally {
  await browser.close();
}
