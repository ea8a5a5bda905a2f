// Group calls with mesh.js in Chromium against the real server (run with
// --disconnect-grace 1s): every pair connects (data channel, video), chat
// reaches everyone, a 7th joiner hears "room full", a closed page leaves
// within the grace period plus a second, simultaneous joiners connect.
// Prints the time from page load to all pairs connected for 2, 4, 6 peers.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { startProxy } from '../lib/proxy.js';
import { serverFor } from '../lib/server.js';
import { waitFor } from '../lib/wait.js';
import { assertLoopbackOnly, launch, noPageErrors } from './browser.js';
import { allConnected, diagnose, framesDecoded, meshPage, meshState } from './mesh-browser.js';

before(assertLoopbackOnly);

const GRACE = ['--disconnect-grace', '1s'];

async function roomValue(url, room, key) {
  return (await fetch(`${url}/rooms/${room}/${key}`)).json();
}

// Opens n pages at once in room and waits until every pair is connected;
// returns the pages and the slowest page's ms from its load to that.
async function group(browser, url, room, n, prefix = 'p') {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  const pages = await Promise.all(ids.map((id) => meshPage(browser, url, room, id)));
  let times;
  try {
    times = await Promise.all(pages.map((p) => allConnected(p, n)));
  } catch (err) {
    throw new Error(`${err.message}\nall pages:\n${(await Promise.all(pages.map(diagnose))).join('\n')}`);
  }
  return { ids, pages, ms: Math.round(Math.max(...times)) };
}

async function expectVideoFromAll(page, n) {
  const frames = await waitFor(async () => {
    const f = await framesDecoded(page);
    return Object.keys(f).length === n - 1 && Object.values(f).every((x) => x > 0) && f;
  }, 'video frames decoded from every peer', 20_000);
  return frames;
}

describe('a group call through mesh.js', () => {
  it('connects 4 members pairwise: open channels, video from each, chat reaches all; a closed page leaves in time', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t, GRACE);
    const { ids, pages, ms } = await group(browser, srv.url, 'mesh4', 4);
    console.log(`TIMING mesh 4 peers: page load -> all pairs connected ${ms} ms`);
    for (const page of pages) await expectVideoFromAll(page, 4);

    await pages[0].evaluate(() => window.meshTest.call.send('hello from p0'));
    for (const page of pages.slice(1)) {
      await page.waitForFunction(() => window.meshTest.messages.some((m) => m.from === 'p0' && m.text === 'hello from p0'), null, { timeout: 5000 });
    }
    assert.deepEqual((await meshState(pages[0])).messages, [], 'send does not echo to the sender');

    // p3 closes its page: its stream goes, the server deletes members/p3
    // after the 1 s grace, and the others drop the pair.
    const started = Date.now();
    await pages[3].close();
    const closed = Date.now();
    const deleted = waitFor(async () => (await roomValue(srv.url, 'mesh4', 'members/p3')) === null && Date.now(), 'members/p3 deleted', 5000);
    const rest = pages.slice(0, 3);
    // onPeerLeft's time on each page, on the same clock as ours.
    const leftAt = await Promise.all(rest.map(async (p) => {
      await p.waitForFunction(() => window.meshTest.left.some((l) => l.id === 'p3'), null, { polling: 20, timeout: 5000 });
      return p.evaluate(() => performance.timeOrigin + window.meshTest.left.find((l) => l.id === 'p3').at);
    }));
    const last = Math.max(...leftAt);
    const deletedAt = await deleted;
    console.log(`TIMING mesh leave (grace 1 s): page.close() took ${closed - started} ms; closed -> members/p3 deleted ${deletedAt - closed} ms, -> onPeerLeft on all others ${Math.round(last - closed)} ms`);
    // The server notices a hung-up stream within half a second (it polls
    // for POLLRDHUP twice a second, api/hangup_linux.go), then waits the
    // 1 s grace, then commits the delete: within grace + 1 s.
    assert.ok(last - closed >= 900, `left ${Math.round(last - closed)} ms after the page closed: before the grace ran out`);
    assert.ok(last - closed <= 2000, `left ${Math.round(last - closed)} ms after the page closed: more than grace + 1 s`);
    assert.ok(last - deletedAt <= 500, `onPeerLeft ${Math.round(last - deletedAt)} ms after members/p3 was deleted`);
    assert.equal(await roomValue(srv.url, 'mesh4', 'members/p3'), null, 'members/p3 deleted');
    for (const [i, page] of rest.entries()) {
      const s = await meshState(page);
      assert.deepEqual(s.peers, ids.slice(0, 3).filter((id) => id !== ids[i]), 'p3 dropped, the others kept');
      assert.deepEqual(s.errors, []);
    }
    // The three still talk.
    await rest[1].evaluate(() => window.meshTest.call.send('still here'));
    for (const page of [rest[0], rest[2]]) {
      await page.waitForFunction(() => window.meshTest.messages.some((m) => m.text === 'still here'), null, { timeout: 5000 });
    }
    noPageErrors(...rest);
  });

  it('measures 2 and 6 members; a 7th joiner gets "room full"', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t, GRACE);
    const two = await group(browser, srv.url, 'mesh2', 2, 'a');
    console.log(`TIMING mesh 2 peers: page load -> all pairs connected ${two.ms} ms`);
    await expectVideoFromAll(two.pages[0], 2);
    await Promise.all(two.pages.map((p) => p.context().close()));

    const six = await group(browser, srv.url, 'mesh6', 6, 'b');
    console.log(`TIMING mesh 6 peers: page load -> all pairs connected ${six.ms} ms`);
    await expectVideoFromAll(six.pages[5], 6);

    const seventh = await meshPage(browser, srv.url, 'mesh6', 'b6');
    const s7 = await meshState(seventh);
    assert.match(s7.error ?? '', /room full/);
    await waitFor(async () => (await roomValue(srv.url, 'mesh6', 'members/b6')) === null, 'the 7th left the members', 5000);
    for (const page of six.pages) {
      const s = await meshState(page);
      assert.equal(s.peers.length, 5, 'still 5 peers each');
      assert.ok(!s.peers.includes('b6'));
    }
    noPageErrors(...six.pages, seventh);
  });

  it('connects two members who join at the same moment, and two who offer at the same moment (ICE restart on both sides)', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t, GRACE);
    const pages = await Promise.all(['x0', 'x1'].map((id) => meshPage(browser, srv.url, 'glare', id, { join: false })));
    // Both are members before either joins: each sees the other at once.
    await waitFor(async () => Object.keys((await roomValue(srv.url, 'glare', 'members')) ?? {}).length === 2, 'both members', 10_000);
    await Promise.all(pages.map((p) => p.join()));
    await Promise.all(pages.map((p) => allConnected(p, 2, 30_000)));
    console.log(`simultaneous join: ${JSON.stringify((await Promise.all(pages.map(meshState))).map((s) => Object.values(s.stats)[0]))}`);
    await pages[1].evaluate(() => window.meshTest.call.send('join ok'));
    await pages[0].waitForFunction(() => window.meshTest.messages.some((m) => m.text === 'join ok'), null, { timeout: 5000 });

    // Both restart ICE at once (as both do on 'failed'): two offers cross,
    // perfect negotiation settles it, new credentials, still connected.
    const ufrag = () => window.meshTest.call.peers.values().next().value.pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1];
    const peerStats = () => window.meshTest.call.peers.values().next().value.stats;
    const before = await Promise.all(pages.map((p) => p.evaluate(ufrag)));
    const statsBefore = await Promise.all(pages.map((p) => p.evaluate(peerStats)));
    await Promise.all(pages.map((p) => p.evaluate(() => window.meshTest.call.peers.values().next().value.pc.restartIce())));
    await Promise.all(pages.map((p, i) => p.waitForFunction((old) => {
      const { pc } = window.meshTest.call.peers.values().next().value;
      return pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1] !== old && pc.signalingState === 'stable';
    }, before[i], { polling: 50, timeout: 25_000 })));
    await Promise.all(pages.map((p) => allConnected(p, 2, 25_000)));
    const statsAfter = await Promise.all(pages.map((p) => p.evaluate(peerStats)));
    console.log(`simultaneous offers: before ${JSON.stringify(statsBefore)} after ${JSON.stringify(statsAfter)}`);
    const collisions = statsAfter.reduce((n, s, i) => n + s.collisions - statsBefore[i].collisions, 0);
    assert.ok(collisions >= 1, 'the two offers collided');
    await pages[0].evaluate(() => window.meshTest.call.send('after restart'));
    await pages[1].waitForFunction(() => window.meshTest.messages.some((m) => m.text === 'after restart'), null, { timeout: 5000 });
    for (const s of await Promise.all(pages.map(meshState))) assert.deepEqual(s.errors, []);
    noPageErrors(...pages);
  });

  it('connects again a member whose entry was deleted and came back (an outage longer than the grace)', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t, GRACE);
    const pages = await Promise.all(['y0', 'y1'].map((id) => meshPage(browser, srv.url, 'outage', id)));
    await Promise.all(pages.map((p) => allConnected(p, 2, 30_000)));
    const sidBefore = await pages[0].evaluate(() => window.meshTest.call.peers.get('y1').sid);
    // What the server does after y1's outage: delete members/y1. y1's room
    // writes it again at once (a new joinedAt); y0 sets the pair up anew.
    const { status } = await fetch(`${srv.url}/rooms/outage/members/y1`, { method: 'DELETE' });
    assert.equal(status, 200);
    await pages[0].waitForFunction(() => window.meshTest.left.some((l) => l.id === 'y1') && window.meshTest.joined.filter((j) => j === 'y1').length === 2, null, { timeout: 5000 });
    const sidAfter = await pages[0].evaluate(() => window.meshTest.call.peers.get('y1').sid);
    assert.notEqual(sidAfter, sidBefore, 'a new session of the pair');
    await Promise.all(pages.map((p) => allConnected(p, 2, 30_000)));
    await pages[1].evaluate(() => window.meshTest.call.send('back'));
    await pages[0].waitForFunction(() => window.meshTest.messages.some((m) => m.text === 'back'), null, { timeout: 5000 });
    const y1 = await meshState(pages[1]);
    assert.deepEqual(y1.left, [], 'y1 never saw y0 leave');
    for (const s of await Promise.all(pages.map(meshState))) assert.deepEqual(s.errors, []);
    noPageErrors(...pages);
  });
});

// A member whose connection is cut without its page closing (here: every
// connection of its page dropped by a proxy, which stays down) is removed
// once the server has found the stream dead and the grace period passed,
// never while it is connected; one back within the grace period stays.
describe('members across a cut connection', () => {
  it('a cut member leaves after the grace period; one back within it stays', async (t) => {
    const browser = await launch(t);
    const srv = await serverFor(t, ['--disconnect-grace', '3s']);
    const proxy = await startProxy(t, srv.url);
    const pages = await Promise.all([
      meshPage(browser, srv.url, 'cut', 'p0'),
      meshPage(browser, proxy.url, 'cut', 'p1'),
    ]);
    await Promise.all(pages.map((p) => allConnected(p, 2)));
    assert.notEqual(await roomValue(srv.url, 'cut', 'members/p1'), null, 'members/p1 while p1 is connected');

    // A blip shorter than the grace period: no leave.
    proxy.cut();
    await new Promise((r) => setTimeout(r, 500));
    proxy.restore();
    await new Promise((r) => setTimeout(r, 4000)); // past the grace period of the blip
    assert.deepEqual((await meshState(pages[0])).left, [], 'p0 saw no leave for a blip');
    assert.notEqual(await roomValue(srv.url, 'cut', 'members/p1'), null, 'members/p1 kept across a blip');

    // Cut for good: p1 leaves after the grace period.
    const cut = Date.now();
    proxy.cut();
    await pages[0].waitForFunction(() => window.meshTest.left.some((l) => l.id === 'p1'), null, { polling: 50, timeout: 10_000 });
    const after = Date.now() - cut;
    console.log(`TIMING mesh cut member (grace 3 s): cut -> onPeerLeft ${after} ms`);
    assert.ok(after >= 2900, `p1 left ${after} ms after the cut, before the grace ran out`);
    assert.equal(await roomValue(srv.url, 'cut', 'members/p1'), null, 'members/p1 deleted');
    noPageErrors(pages[0]); // p1's page logs its failed loads: it was cut off
  });
});
