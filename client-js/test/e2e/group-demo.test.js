// The demo page's group mode (#group=1, mesh.js): three Chromium contexts
// in one room each show a tile per peer that turns "connected" and plays,
// the chat reaches everyone, and a closed page's tile goes away.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { serverFor } from '../lib/server.js';
import { assertLoopbackOnly, launch, noPageErrors, openPage, screenshot } from './browser.js';

before(assertLoopbackOnly);

const tiles = (page) => page.$$eval('#tiles figure', (fs) => fs.map((f) => ({
  state: f.querySelector('.tile-state').textContent,
  width: f.querySelector('video').videoWidth,
})));

async function expectTiles(page, n, timeout = 30_000) {
  await page.waitForFunction((k) => {
    const figs = [...document.querySelectorAll('#tiles figure')];
    return figs.length === k && figs.every((f) => f.querySelector('.tile-state').textContent === 'connected'
      && f.querySelector('video').videoWidth > 0);
  }, n, { polling: 50, timeout });
}

describe('the demo page in group mode', () => {
  it('shows a tile per peer, shares the chat, drops the tile of a closed page', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t, ['--disconnect-grace', '1s']);
    const url = `${srv.url}/#group=1&room=grp`;
    const pages = await Promise.all(['g0', 'g1', 'g2'].map((name) => openPage(browser, url, name)));
    await Promise.all(pages.map((p) => expectTiles(p, 2)));
    assert.equal(await pages[0].$eval('#share', (a) => a.href), `${srv.url}/#room=grp&group=1`);
    assert.equal(await pages[0].$eval('#group', (c) => c.checked), true);
    const marks = await Promise.all(pages.map((p) => p.evaluate(() => window.sigbaseDemo.marks.firstFrame)));
    console.log(`TIMING group demo 3 peers: page load -> first remote frame ${marks.map(Math.round).join(', ')} ms`);

    await pages[0].fill('#chat-input', 'hi all');
    await pages[0].click('#chat-send');
    for (const page of pages.slice(1)) {
      await page.waitForFunction(() => document.getElementById('chat-log').textContent.includes('hi all'), null, { timeout: 5000 });
    }
    await Promise.all(pages.map((p, i) => screenshot(p, `group-${i}.png`)));

    await pages[2].close();
    for (const page of pages.slice(0, 2)) {
      await page.waitForFunction(() => document.querySelectorAll('#tiles figure').length === 1, null, { timeout: 5000 });
      assert.equal((await tiles(page))[0].state, 'connected');
    }

    await pages[1].click('#hangup');
    await pages[0].waitForFunction(() => document.querySelectorAll('#tiles figure').length === 0, null, { timeout: 5000 });
    assert.equal(await pages[1].$eval('#tiles', (el) => el.hidden), true, 'tiles hidden after leaving');
    const members = await (await fetch(`${srv.url}/rooms/grp/members`)).json();
    assert.deepEqual(Object.keys(members), [await pages[0].evaluate(() => window.sigbaseDemo.room.memberId)], 'only g0 is left');
    noPageErrors(...pages.slice(0, 2));
  });
});
