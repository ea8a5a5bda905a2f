// Chromium and Firefox ESR on one call through the demo page, each as caller
// and as callee. Skipped when firefox-esr is not installed.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { before, describe, it } from 'node:test';

import { serverFor } from '../lib/server.js';
import { waitFor } from '../lib/wait.js';
import { assertLoopbackOnly, expectPlayingRemoteVideo, launch, noPageErrors, openPage, roomName } from './browser.js';
import { firefoxBin, launchFirefox } from './marionette.js';

before(assertLoopbackOnly);

const skip = existsSync(firefoxBin) ? false : `${firefoxBin} not installed`;

/** The demo in Firefox, driven with scripts. */
function firefoxDemo(ff) {
  return {
    marks: () => ff.run('return window.sigbaseDemo?.marks ?? {}'),
    room: () => ff.run('return window.sigbaseDemo?.room?.name ?? null'),
    chatLog: () => ff.run("return document.getElementById('chat-log').textContent"),
    async say(text) {
      await ff.run("const i = document.getElementById('chat-input'); i.value = arguments[0]; document.getElementById('chat-send').click();", [text]);
    },
    async expectPlayingRemoteVideo() {
      await waitFor(() => ff.run("return document.getElementById('remote').videoWidth > 0"), 'Firefox to show remote video', 20_000);
      const t0 = await ff.run("return document.getElementById('remote').currentTime");
      await waitFor(async () => (await ff.run("return document.getElementById('remote').currentTime")) > t0 + 0.5, 'Firefox remote video to play', 20_000);
    },
  };
}

describe('Chromium and Firefox on one call', { skip }, () => {
  it('connects a Chromium caller with a Firefox callee', async (t) => {
    const ff = await launchFirefox(t);
    const browser = await launch(t);
    const srv = await serverFor(t);
    const caller = await openPage(browser, `${srv.url}/`, 'chromium caller');
    await caller.click('#create');
    const name = await roomName(caller);
    await ff.navigate(`${srv.url}/#room=${name}`);
    const callee = firefoxDemo(ff);

    await caller.waitForFunction(() => window.sigbaseDemo.marks.channelOpen !== undefined)
      .catch(async (err) => {
        console.log(`Firefox state log:\n${await ff.run("return document.getElementById('state-log').innerText")}`);
        throw err;
      });
    await waitFor(async () => (await callee.marks()).channelOpen !== undefined, 'the Firefox data channel', 20_000);
    await caller.fill('#chat-input', 'hello Firefox');
    await caller.click('#chat-send');
    await waitFor(async () => (await callee.chatLog()).includes('hello Firefox'), 'the message in Firefox');
    await callee.say('hello Chromium');
    await caller.waitForFunction(() => document.getElementById('chat-log').textContent.includes('hello Chromium'));
    await callee.expectPlayingRemoteVideo();
    await expectPlayingRemoteVideo(caller);
    noPageErrors(caller);
  });

  it('connects a Firefox caller with a Chromium callee', async (t) => {
    const ff = await launchFirefox(t);
    const browser = await launch(t);
    const srv = await serverFor(t);
    await ff.navigate(`${srv.url}/`);
    await ff.run("document.getElementById('create').click()");
    const caller = firefoxDemo(ff);
    const name = await waitFor(() => caller.room(), 'the Firefox room');
    const callee = await openPage(browser, `${srv.url}/#room=${name}`, 'chromium callee');

    await callee.waitForFunction(() => window.sigbaseDemo.marks.channelOpen !== undefined);
    await caller.say('hello Chromium');
    await callee.waitForFunction(() => document.getElementById('chat-log').textContent.includes('hello Chromium'));
    await callee.fill('#chat-input', 'hello Firefox');
    await callee.click('#chat-send');
    await waitFor(async () => (await caller.chatLog()).includes('hello Firefox'), 'the message in Firefox');
    await expectPlayingRemoteVideo(callee);
    await caller.expectPlayingRemoteVideo();
    assert.match(await ff.run('return navigator.userAgent'), /Firefox\//);
    noPageErrors(callee);
  });
});
