// Issue 15, items 12-14: the demo page says in words why a call does not
// connect instead of sitting at "idle" (relay only on a server without
// TURN; a connection that is not up within #ice-timeout seconds, with the
// ICE states), and after a hang-up it offers no share link to the deleted
// room, on either side.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { serverFor } from '../lib/server.js';
import { assertLoopbackOnly, launch, noPageErrors, openPage, roomName, screenshot } from './browser.js';

before(assertLoopbackOnly);

/** The problem line once it shows, or a timeout naming what the page logged. */
async function problemText(page, timeout = 15_000) {
  try {
    await page.waitForFunction(() => !document.getElementById('problem')?.hidden, null, { timeout });
  } catch (err) {
    const log = await page.$eval('#state-log', (l) => l.innerText);
    throw new Error(`no problem shown: ${err.message}\nstate log:\n${log}`);
  }
  return page.$eval('#problem', (p) => p.textContent);
}

/**
 * Answers every candidate push with a made-up success and drops it: the
 * offer and answer get through, but neither browser learns an address of
 * the other, so ICE can never connect (a network with no path, on loopback).
 */
function dropCandidatePushes(page) {
  return page.route(/\/rooms\/[^/]+\/(caller|callee)Candidates$/, (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    return route.fulfill({ status: 200, contentType: 'application/json', body: '{"name":"-dropped"}' });
  });
}

describe('the demo page explains a call that does not connect', () => {
  it('says that #relay=1 needs TURN when the server has none', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t); // no --turn: /ice-servers lists nothing
    const page = await openPage(browser, `${srv.url}/#relay=1`, 'caller');
    await page.click('#create');
    const text = await problemText(page);
    assert.match(text, /needs TURN configured on the server/);
    assert.match(text, /TURN is not configured on this server/);
    assert.match(text, /--turn and --turn-secret/);
    assert.equal(await page.$eval('#status', (s) => s.textContent), 'TURN not configured');
    assert.equal(await page.$eval('#create', (b) => b.disabled), false, 'back in the lobby');
    assert.equal(await page.$eval('#share-box', (b) => b.hidden), true, 'no link to a call that cannot start');

    // The same for whoever opens a relay link to this server.
    const callee = await openPage(browser, `${srv.url}/#room=someroom&relay=1`, 'callee');
    assert.match(await problemText(callee), /TURN is not configured on this server/);
    await screenshot(page, 'relay-no-turn.png');
    noPageErrors(page, callee);
  });

  it('names the stuck ICE state when the connection is not up within #ice-timeout', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t);
    const caller = await openPage(browser, `${srv.url}/#ice-timeout=2`, 'caller');
    await dropCandidatePushes(caller);
    await caller.click('#create');
    const name = await roomName(caller);
    const callee = await openPage(browser, `${srv.url}/#ice-timeout=2`, 'callee');
    await dropCandidatePushes(callee);
    await callee.evaluate((n) => { location.hash = `room=${n}&ice-timeout=2`; }, name); // joins now, with the route in place

    for (const page of [caller, callee]) {
      const text = await problemText(page);
      assert.match(text, /^Not connected after 2 s: no network addresses \(ICE candidates\) arrived from the peer\./);
      assert.match(text, /iceGatheringState \w+, iceConnectionState \w+, connectionState \w+/);
      assert.doesNotMatch(text, /connectionState connected/);
      assert.equal(await page.$eval('#status', (s) => s.textContent), 'not connected');
      assert.equal(await page.evaluate(() => window.sigbaseDemo.marks.channelOpen), undefined);
    }
    assert.match(await callee.evaluate(() => location.hash), /ice-timeout=2/, 'joining kept the option in the URL');
    await screenshot(callee, 'ice-timeout.png');
    noPageErrors(caller, callee);
  });
});

describe('hang-up', () => {
  it('stops showing the share link of the deleted room, on both sides', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t);
    const caller = await openPage(browser, `${srv.url}/`, 'caller');
    await caller.click('#create');
    const name = await roomName(caller);
    assert.equal(await caller.$eval('#share-box', (b) => b.hidden), false);
    const callee = await openPage(browser, `${srv.url}/#room=${name}`, 'callee');
    assert.equal(await callee.$eval('#share', (a) => a.href), `${srv.url}/#room=${name}`);
    await Promise.all([caller, callee].map((p) => p.waitForFunction(() => window.sigbaseDemo.marks.channelOpen !== undefined)));

    await caller.click('#hangup');
    await callee.waitForFunction(() => document.getElementById('state-log').textContent.includes('call ended: remote hung up'));
    await caller.waitForFunction(() => document.getElementById('state-log').textContent.includes('hung up: room deleted'));
    assert.equal(await (await fetch(`${srv.url}/rooms/${name}`)).json(), null, 'the room is deleted');
    for (const page of [caller, callee]) {
      const share = await page.$eval('#share-box', (b) => ({ hidden: b.hidden, visible: b.checkVisibility(), link: b.querySelector('#share').textContent }));
      assert.deepEqual(share, { hidden: true, visible: false, link: '' });
      assert.doesNotMatch(await page.evaluate(() => location.hash), /room=/, 'a reload does not rejoin the deleted room');
      assert.equal(await page.$eval('#problem', (p) => p.hidden), true);
    }
    noPageErrors(caller, callee);
  });
});
