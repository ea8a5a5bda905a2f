// Two Chromium contexts make a call through the demo page and the real
// server: data channel both ways, the callee's remote video plays, hang-up
// deletes the room. Timings from page load are printed.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { serverFor } from '../lib/server.js';
import { waitFor } from '../lib/wait.js';
import {
  assertLoopbackOnly, chatAcross, expectPlayingRemoteVideo, launch, noPageErrors, openPage, roomName, screenshot, timings,
} from './browser.js';

before(assertLoopbackOnly);

function report(label, marks) {
  console.log(`TIMING ${label}: page load -> data channel open ${Math.round(marks.channelOpen)} ms, -> first remote video frame ${Math.round(marks.firstFrame)} ms`);
}

async function roomValue(url, name) {
  return (await fetch(`${url}/rooms/${name}`)).json();
}

describe('a call through the demo page', () => {
  it('connects two browsers: chat both ways, remote video plays, hang-up deletes the room', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t);
    const caller = await openPage(browser, `${srv.url}/`, 'caller');
    await caller.click('#create');
    const name = await roomName(caller);
    assert.match(name, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(await caller.$eval('#share', (a) => a.href), `${srv.url}/#room=${name}`);
    const callee = await openPage(browser, `${srv.url}/#room=${name}`, 'callee');

    const [callerMarks, calleeMarks] = await Promise.all([timings(caller), timings(callee)]);
    report('normal caller', callerMarks);
    report('normal callee', calleeMarks);
    await chatAcross(caller, callee, 'hello from the caller');
    await chatAcross(callee, caller, 'hello from the callee');
    const size = await expectPlayingRemoteVideo(callee);
    assert.ok(size.width > 0 && size.height > 0, `callee sees ${size.width}x${size.height}`);
    await expectPlayingRemoteVideo(caller);

    const room = await roomValue(srv.url, name);
    assert.ok(Object.keys(room.callerCandidates ?? {}).length >= 1, 'caller trickled candidates');
    assert.ok(Object.keys(room.calleeCandidates ?? {}).length >= 1, 'callee trickled candidates');
    assert.equal(room.answer.sid, room.offer.sid, 'the answer names the offer it answers');
    await Promise.all([screenshot(caller, 'call-caller.png'), screenshot(callee, 'call-callee.png')]);

    await caller.click('#hangup');
    await callee.waitForFunction(() => document.getElementById('state-log').textContent.includes('call ended: remote hung up'));
    assert.equal(await roomValue(srv.url, name), null, 'hang-up deleted the room');
    assert.equal(await callee.$eval('#chat-input', (i) => i.disabled), true);
    assert.equal(await caller.$eval('#create', (b) => b.disabled), false);
    noPageErrors(caller, callee);
  });

  it('connects a late joiner who opens the page after the caller wrote everything', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t);
    const caller = await openPage(browser, `${srv.url}/`, 'caller');
    await caller.click('#create');
    const name = await roomName(caller);
    await caller.waitForFunction(() => window.sigbaseDemo.call?.pc.iceGatheringState === 'complete');
    const gathered = await caller.evaluate(async () => {
      const stats = await window.sigbaseDemo.call.pc.getStats();
      return [...stats.values()].filter((s) => s.type === 'local-candidate').length;
    });
    await waitFor(async () => Object.keys((await roomValue(srv.url, name))?.callerCandidates ?? {}).length >= gathered,
      'every caller candidate in the room');

    const callee = await openPage(browser, `${srv.url}/#room=${name}`, 'callee');
    const calleeMarks = await timings(callee);
    report('late-joiner callee', calleeMarks);
    await chatAcross(callee, caller, 'late but here');
    await chatAcross(caller, callee, 'welcome');
    await expectPlayingRemoteVideo(callee);
    await Promise.all([screenshot(caller, 'late-caller.png'), screenshot(callee, 'late-callee.png')]);
    noPageErrors(caller, callee);
  });

  it('lays the page out in one column on a phone', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t);
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(`${srv.url}/`);
    await page.click('#create');
    await roomName(page);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no horizontal scroll: page is ${width}px wide`);
    const boxes = await Promise.all(['#lobby', '#videos', '#chat', '#states'].map((s) => page.locator(s).boundingBox()));
    for (let i = 1; i < boxes.length; i++) assert.ok(boxes[i].y >= boxes[i - 1].y + boxes[i - 1].height - 1, 'stacked');
    await screenshot(page, 'phone.png');
    assert.deepEqual(errors, [], 'no errors, no CSP violations');
  });
});
