// Issue 6: the demo over HTTPS and HTTP/2, served by sigbase itself with
// --tls-self-signed, inside the loopback-only namespace. Chromium reaches it
// as https://sigbase.test (mapped to 127.0.0.1), a name that is not loopback
// to the browser, so only HTTPS makes the page a secure context with a
// camera. Every request goes over h2, and one page holds 10 streams on 10
// rooms at once; over HTTP/1.1 the 7th and later would stall behind the
// browser's 6-connection cap, which the last test shows.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { before, describe, it } from 'node:test';

import { metric, startServer, tempDir } from '../lib/server.js';
import { sleep, waitFor } from '../lib/wait.js';
import {
  assertLoopbackOnly, chatAcross, expectPlayingRemoteVideo, launch, noPageErrors, openPage, roomName, screenshot, timings,
} from './browser.js';

before(assertLoopbackOnly);

const HOST = 'sigbase.test';
const FLAGS = ['--ignore-certificate-errors', `--host-resolver-rules=MAP ${HOST} 127.0.0.1`];

/** sigbase with a self-signed certificate that also names HOST. */
async function tlsServer(t) {
  const dir = tempDir(t);
  const srv = await startServer({ data: join(dir, 'db'), args: ['--tls-self-signed', '--tls-hosts', HOST] });
  t.after(() => srv.stop());
  const lines = await waitFor(() => { const l = srv.stdout.split('\n'); return l.length >= 3 && l; }, 'the fingerprint line');
  assert.match(lines[0], /^listening on https:\/\/127\.0\.0\.1:\d+$/);
  const fp = /sha256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$/.exec(lines[1]);
  assert.ok(fp, `second line names the fingerprint: ${lines[1]}`);
  assert.match(lines[1], new RegExp(`\\b${HOST.replace('.', '\\.')}\\b`), 'the certificate covers --tls-hosts');
  const port = Number(new URL(srv.url).port);
  return Object.assign(srv, { port, origin: `https://${HOST}:${port}`, fingerprint: fp[1], ca: readFileSync(join(dir, 'sigbase-tls.crt')) });
}

/** A TLS handshake that trusts only the server's own certificate: which protocol, which certificate. */
function handshake(srv) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: srv.port, servername: HOST, ca: srv.ca, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const result = { authorized: socket.authorized, alpn: socket.alpnProtocol, fingerprint: socket.getPeerCertificate().fingerprint256 };
      socket.destroy();
      resolve(result);
    });
    socket.on('error', reject);
  });
}

/** GET over HTTPS from Node, trusting the server's certificate; resolves to the body. */
function httpsGet(srv, path) {
  return new Promise((resolve, reject) => {
    // agent: false: a connection of its own, closed after the response, so
    // that connectionsTo() counts only the browser's.
    const req = https.get({ host: '127.0.0.1', port: srv.port, servername: HOST, path, ca: srv.ca, timeout: 5_000, agent: false }, (res) => {
      let body = '';
      res.on('data', (b) => { body += b; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${path}: timed out`)));
    req.on('error', reject);
  });
}

/** Established TCP connections to the server's port (this namespace holds only the test's). */
function connectionsTo(port) {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).length;
}

/** The protocol of the page's navigation and of each resource it fetched. */
function protocols(page) {
  return page.evaluate(() => ({
    secure: window.isSecureContext,
    camera: typeof navigator.mediaDevices?.getUserMedia === 'function',
    navigation: performance.getEntriesByType('navigation')[0].nextHopProtocol,
    resources: performance.getEntriesByType('resource').map((e) => ({
      path: new URL(e.name).pathname, type: e.initiatorType, protocol: e.nextHopProtocol,
    })),
  }));
}

function assertAllH2(p, label) {
  assert.equal(p.secure, true, `${label}: a secure context`);
  assert.equal(p.camera, true, `${label}: getUserMedia is there`);
  assert.equal(p.navigation, 'h2', `${label}: the page came over h2`);
  const paths = new Set(p.resources.map((r) => r.path));
  for (const want of ['/client/demo.css', '/client/demo.js', '/client/sigbase.js', '/client/webrtc.js', '/ice-servers']) {
    assert.ok(paths.has(want), `${label}: ${want} fetched (got ${[...paths]})`);
  }
  const notH2 = p.resources.filter((r) => r.protocol !== 'h2');
  assert.deepEqual(notH2, [], `${label}: every request over h2`);
}

/** Reads a room from inside a page (same origin, same connection). */
function roomFromPage(page, name) {
  return page.evaluate(async (n) => (await fetch(`/rooms/${n}`)).json(), name);
}

/** Opens n rooms with the real client in the page, each with recv('msg'). */
function openRooms(page, n) {
  return page.evaluate(async (count) => {
    const { connect } = await import(`${location.origin}/client/sigbase.js`);
    window.rooms = Array.from({ length: count }, () => connect(location.origin));
    window.got = window.rooms.map(() => []);
    window.rooms.forEach((room, i) => room.recv('msg', (v) => window.got[i].push(v)));
    return window.rooms.map((r) => r.name);
  }, n);
}

const openCount = (page) => page.evaluate(() => window.rooms.filter((r) => r.state === 'open').length);

describe('the demo over HTTPS and HTTP/2', () => {
  it('serves h2 by ALPN with the certificate whose fingerprint it printed', async (t) => {
    const srv = await tlsServer(t);
    const hs = await handshake(srv);
    assert.deepEqual(hs, { authorized: true, alpn: 'h2', fingerprint: srv.fingerprint });
    assert.equal(await httpsGet(srv, '/healthz').then(() => 'ok'), 'ok', 'HTTP/1.1 over TLS still works');
  });

  it('completes a call between two browsers: chat both ways, remote video plays, every request over h2', async (t) => {
    const browser = await launch(t, FLAGS);
    const srv = await tlsServer(t);
    const caller = await openPage(browser, `${srv.origin}/`, 'caller');
    await caller.click('#create');
    const name = await roomName(caller);
    assert.equal(await caller.$eval('#share', (a) => a.href), `${srv.origin}/#room=${name}`);
    const callee = await openPage(browser, `${srv.origin}/#room=${name}`, 'callee');

    const [callerMarks, calleeMarks] = await Promise.all([timings(caller), timings(callee)]);
    for (const [label, m] of [['https caller', callerMarks], ['https callee', calleeMarks]]) {
      console.log(`TIMING ${label}: page load -> data channel open ${Math.round(m.channelOpen)} ms, -> first remote video frame ${Math.round(m.firstFrame)} ms`);
    }
    await chatAcross(caller, callee, 'hello over https');
    await chatAcross(callee, caller, 'and back over h2');
    const size = await expectPlayingRemoteVideo(callee);
    assert.ok(size.width > 0 && size.height > 0, `callee sees ${size.width}x${size.height}`);
    await expectPlayingRemoteVideo(caller);

    const room = await roomFromPage(callee, name);
    assert.ok(Object.keys(room.callerCandidates ?? {}).length >= 1, 'caller trickled candidates');
    assert.ok(Object.keys(room.calleeCandidates ?? {}).length >= 1, 'callee trickled candidates');
    assert.equal(room.answer.sid, room.offer.sid);
    for (const [label, page] of [['caller', caller], ['callee', callee]]) {
      const p = await protocols(page);
      console.log(`PROTOCOLS ${label}: navigation ${p.navigation}; ${p.resources.map((r) => `${r.path.replace(/\/rooms\/[^/]+/, '/rooms/R')} ${r.protocol}`).join(', ')}`);
      assertAllH2(p, label);
    }
    // Two pages, each with its stream and its writes: one connection each.
    const conns = connectionsTo(srv.port);
    console.log(`CONNECTIONS https call: ${conns} TCP connections to sigbase for two pages`);
    assert.ok(conns <= 2, `h2 multiplexes: ${conns} connections`);
    await Promise.all([screenshot(caller, 'https-caller.png'), screenshot(callee, 'https-callee.png')]);

    await caller.click('#hangup');
    await callee.waitForFunction(() => document.getElementById('state-log').textContent.includes('call ended: remote hung up'));
    assert.equal(await roomFromPage(caller, name), null, 'hang-up deleted the room');
    noPageErrors(caller, callee);
  });

  it('holds 10 streams on 10 rooms in one page, and all of them get their events', async (t) => {
    const browser = await launch(t, FLAGS);
    const srv = await tlsServer(t);
    const page = await openPage(browser, `${srv.origin}/`, 'ten rooms');
    const names = await openRooms(page, 10);
    assert.equal(new Set(names).size, 10);
    await page.waitForFunction(() => window.rooms.every((r) => r.state === 'open') && window.got.every((g) => g.length === 1), null, { timeout: 10_000 });
    assert.equal(Number((await httpsGet(srv, '/metrics')).match(/^sigbase_watchers (\d+)$/m)?.[1]), 10, 'the server holds 10 streams');

    // Writes from the same page while its 10 streams are open, then each
    // room's event back on its own stream.
    await page.evaluate(() => Promise.all(window.rooms.map((r, i) => r.send('msg', `hello ${i}`))));
    await page.waitForFunction(() => window.got.every((g, i) => g.at(-1) === `hello ${i}`), null, { timeout: 10_000 });
    const got = await page.evaluate(() => window.got);
    assert.deepEqual(got, names.map((_, i) => [null, `hello ${i}`]));
    const p = await protocols(page);
    assert.equal(p.navigation, 'h2');
    assert.deepEqual(p.resources.filter((r) => r.protocol !== 'h2'), [], 'every request over h2');
    const conns = connectionsTo(srv.port);
    console.log(`CONNECTIONS https, 10 streams in one page: ${conns} TCP connection(s)`);
    assert.equal(conns, 1, 'the page, its 10 streams and its writes share one connection');

    await page.evaluate(() => window.rooms.forEach((r) => r.close()));
    await waitFor(async () => Number((await httpsGet(srv, '/metrics')).match(/^sigbase_watchers (\d+)$/m)?.[1]) === 0, 'the streams to close');
    noPageErrors(page);
  });

  it('contrast: over plain HTTP/1.1 the same page gets only 6 streams until one closes, and no camera', async (t) => {
    const browser = await launch(t, FLAGS);
    const dir = tempDir(t);
    const srv = await startServer({ data: join(dir, 'db') });
    t.after(() => srv.stop());
    const port = new URL(srv.url).port;
    const page = await openPage(browser, `http://${HOST}:${port}/`, 'http/1.1');
    const p = await protocols(page);
    assert.equal(p.navigation, 'http/1.1');
    assert.equal(p.secure, false, 'sigbase.test over http is not a secure context');
    assert.equal(p.camera, false, 'so there is no getUserMedia');

    await openRooms(page, 10);
    await page.waitForFunction(() => window.rooms.filter((r) => r.state === 'open').length >= 6, null, { timeout: 10_000 });
    await sleep(1_500);
    assert.equal(await openCount(page), 6, 'the browser caps HTTP/1.1 at 6 connections per origin');
    assert.equal(await metric(srv.url, 'sigbase_watchers'), 6);
    const stalled = await page.evaluate(() => window.rooms.map((r) => r.state));
    assert.equal(stalled.filter((s) => s === 'connecting').length, 4, `states: ${stalled}`);

    // Closing 4 open rooms frees their connections for the 4 stalled ones.
    await page.evaluate(() => window.rooms.filter((r) => r.state === 'open').slice(0, 4).forEach((r) => r.close()));
    await page.waitForFunction(() => window.rooms.filter((r) => r.state === 'open').length === 6, null, { timeout: 10_000 });
    assert.deepEqual(await page.evaluate(() => window.rooms.map((r) => r.state).filter((s) => s === 'connecting')), []);
    await page.evaluate(() => window.rooms.forEach((r) => r.close()));
    noPageErrors(page);
  });
});
