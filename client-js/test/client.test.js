// sigbase.js against the real server: reads, writes, subscriptions, errors.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';

import { SigbaseError, connect, randomRoomName } from '../sigbase.js';
import { childLog, eventSources, open, recvLog } from './lib/client.js';
import { startProxy } from './lib/proxy.js';
import { metric, serverFor } from './lib/server.js';
import { sleep, waitFor } from './lib/wait.js';

describe('recv', () => {
  it('fires with a value written before subscribing, then on every change', async (t) => {
    const srv = await serverFor(t);
    const writer = open(t, srv.url);
    await writer.send('offer', { type: 'offer', sdp: 'v1' });
    const reader = open(t, srv.url, { room: writer.name });
    const got = recvLog(reader, 'offer');
    await waitFor(() => got.length === 1, 'the current value');
    assert.deepEqual(got, [{ type: 'offer', sdp: 'v1' }]);
    await writer.send('offer', { type: 'offer', sdp: 'v2' });
    await waitFor(() => got.length === 2, 'the change');
    assert.deepEqual(got[1], { type: 'offer', sdp: 'v2' });
  });

  it('fires null for an absent key, then the value once it is sent', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const got = recvLog(room, 'answer');
    await waitFor(() => got.length === 1, 'the initial null');
    assert.deepEqual(got, [null]);
    await room.send('answer', 'hello');
    await waitFor(() => got.length === 2, 'the value');
    assert.deepEqual(got, [null, 'hello']);
  });

  it('fires at once when subscribing to a room already loaded', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const first = recvLog(room, 'k');
    // Loaded first: a send racing the stream's start may land in its
    // snapshot, and then recv fires once, with 1, not null then 1.
    await waitFor(() => first.length === 1, 'the room to load');
    await room.send('k', 1);
    await waitFor(() => first.length === 2, 'the first subscription');
    const late = recvLog(room, 'k');
    await waitFor(() => late.length === 1, 'the late subscription');
    assert.deepEqual(late, [1]);
  });

  it('sees a deleted key and a deleted room as null', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    await room.send('a', 1);
    await room.send('b', 2);
    const a = recvLog(room, 'a');
    const b = recvLog(room, 'b');
    await waitFor(() => a.at(-1) === 1 && b.at(-1) === 2, 'the current values');
    await room.remove('a');
    await waitFor(() => a.at(-1) === null, 'the delete of a');
    assert.deepEqual(a.filter((v, i) => i > 0 || v !== null), [1, null]);
    await room.delete();
    await waitFor(() => b.at(-1) === null, 'the delete of the room');
    assert.deepEqual(b.filter((v, i) => i > 0 || v !== null), [2, null]);
    assert.equal(await room.get(), null);
  });

  it('does not fire when a write leaves the value unchanged', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const got = recvLog(room, 'k');
    await waitFor(() => got.length === 1, 'the initial null');
    await room.send('k', { x: 1 });
    await room.send('k', { x: 1 });
    await room.send('other', 1);
    await room.send('k', { x: 2 });
    await waitFor(() => got.at(-1)?.x === 2, 'the last change');
    assert.deepEqual(got, [null, { x: 1 }, { x: 2 }]);
  });

  it('stops firing after unsubscribe', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const got = recvLog(room, 'k');
    await room.send('k', 1);
    await waitFor(() => got.at(-1) === 1, 'the value');
    const n = got.length;
    got.unsubscribe();
    await room.send('k', 2);
    const witness = recvLog(room, 'k');
    await waitFor(() => witness.at(-1) === 2, 'a later subscriber to see the change');
    assert.equal(got.length, n);
  });

  it('applies patches at the room and at a key, with member paths', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const a = recvLog(room, 'a');
    const b = childLog(room, 'b');
    await room.update({ a: 1, 'b/c1': 'x' });
    await waitFor(() => a.at(-1) === 1 && b.length === 1, 'the room patch');
    const res = await fetch(`${srv.url}/rooms/${room.name}/b`, { method: 'PATCH', body: JSON.stringify({ c2: 'y', c1: null }) });
    assert.equal(res.status, 200);
    await waitFor(() => b.length === 2, 'the key patch');
    assert.deepEqual(b, [['c1', 'x'], ['c2', 'y']]);
    assert.deepEqual(await room.get('b'), { c2: 'y' });
  });

  it('hands each handler its own copy of the value', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const first = [];
    room.recv('k', (v) => { if (v) { v.mutated = true; first.push(v); } });
    await room.send('k', { x: 1 });
    await waitFor(() => first.length === 1, 'the value');
    const second = recvLog(room, 'k');
    await waitFor(() => second.length === 1, 'a second subscriber');
    assert.deepEqual(second, [{ x: 1 }]);
  });
});

describe('recvChild', () => {
  it('fires once per child, existing ones first, in push order', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await room.push('callerCandidates', { n: i }));
    const got = childLog(room, 'callerCandidates');
    await waitFor(() => got.length === 3, 'the existing children');
    ids.push(await room.push('callerCandidates', { n: 3 }));
    await room.send('callerCandidates/' + ids[0], { n: 0, changed: true });
    await waitFor(() => got.length === 4, 'the new child');
    await sleep(200);
    assert.deepEqual(got.ids(), ids);
    assert.deepEqual(got.map(([, v]) => v.n), [0, 1, 2, 3]);
  });

  it('is not fooled by a key replaced with the same children', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const got = childLog(room, 'c');
    await room.send('c', { a: 1, b: 2 });
    await waitFor(() => got.length === 2, 'two children');
    await room.send('c', { a: 1, b: 2, d: 3 });
    await room.remove('c');
    await room.send('c', { a: 1 });
    await room.send('c/e', 4);
    await waitFor(() => got.length === 4, 'the later children');
    await sleep(200);
    assert.deepEqual(got.ids(), ['a', 'b', 'd', 'e']);
  });
});

describe('state and close', () => {
  it('reports connecting, then open', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    await waitFor(() => room.state === 'open', 'open');
    assert.deepEqual(room.states, ['connecting', 'open']);
  });

  it('close stops every handler and closes the EventSource', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const value = recvLog(room, 'k');
    const children = childLog(room, 'c');
    await room.send('k', 1);
    await room.push('c', 1);
    await waitFor(() => value.at(-1) === 1 && children.length === 1, 'the first values');
    const es = eventSources.filter((e) => e.url.includes(room.name));
    assert.equal(es.length, 1, 'one EventSource per room');
    assert.equal(await metric(srv.url, 'sigbase_watchers'), 1);

    room.close();
    assert.equal(room.state, 'closed');
    assert.equal(es[0].readyState, 2, 'EventSource closed');
    const other = open(t, srv.url, { room: room.name });
    const witness = childLog(other, 'c');
    await other.send('k', 2);
    await other.push('c', 2);
    await waitFor(() => witness.length === 2, 'another room to see the writes');
    await sleep(300);
    assert.deepEqual(value.slice(-1), [1]);
    assert.equal(children.length, 1);
    await assert.rejects(room.send('k', 3), /closed/);
    assert.deepEqual(room.states, ['connecting', 'open', 'closed']);
    await waitFor(async () => (await metric(srv.url, 'sigbase_watchers')) === 1, 'the server to drop the closed stream');
  });
});

describe('errors', () => {
  it('surface as rejected promises with the server message and status', async (t) => {
    const srv = await serverFor(t);
    const room = open(t, srv.url);
    const err = await room.send('bad.name', 1).then(() => null, (e) => e);
    assert.ok(err instanceof SigbaseError, `got ${err}`);
    assert.equal(err.status, 400);
    assert.match(err.message, /key name "bad\.name" must match/);
    await assert.rejects(room.send('a/b/c', 1), { name: 'SigbaseError', status: 400, message: /three levels/ });
    await assert.rejects(room.update([1]), { status: 400 });
    await assert.rejects(room.push('k', 'x'.repeat(70_000)), { status: 413 });
    assert.equal(await room.get('bad.name').catch((e) => e.status), 400);
  });

  it('reject invalid arguments before any request', async (t) => {
    const srv = await serverFor(t);
    assert.throws(() => connect(srv.url, { room: 'no spaces', EventSource: class {} }), TypeError);
    assert.throws(() => connect('ftp://x', { EventSource: class {} }), TypeError);
    const room = open(t, srv.url);
    await assert.rejects(room.send('', 1), TypeError);
    await assert.rejects(room.send('k', undefined), TypeError);
    assert.throws(() => room.recv('a/b', () => {}), TypeError);
  });
});

describe('room names and tokens', () => {
  it('generates 128-bit random room names', () => {
    const names = new Set(Array.from({ length: 100 }, randomRoomName));
    assert.equal(names.size, 100);
    for (const n of names) assert.match(n, /^[A-Za-z0-9_-]{22}$/);
  });

  it('passes the token as Bearer to fetch and as auth= to EventSource', async (t) => {
    const srv = await serverFor(t);
    const proxy = await startProxy(t, srv.url);
    let calls = 0;
    const room = open(t, proxy.url, { token: () => { calls++; return 'tok.en-1'; } });
    await room.send('k', 1);
    await waitFor(() => room.state === 'open', 'open');
    const stream = proxy.requests.find((r) => r.startsWith('GET /rooms/'));
    const put = proxy.requests.find((r) => r.startsWith('PUT /rooms/'));
    assert.match(stream, /^GET \/rooms\/[\w-]+\?auth=tok\.en-1 HTTP/);
    assert.match(put, /\r\nauthorization: Bearer tok\.en-1\r\n/i);
    assert.ok(calls >= 2);
  });
});

describe('iceServers', () => {
  it('returns the configured STUN and a TURN credential by the TURN REST scheme', async (t) => {
    const secret = 's3cret';
    const srv = await serverFor(t, ['--stun', 'stun:127.0.0.1:3478', '--turn', 'turn:127.0.0.1:3478?transport=udp', '--turn-secret', secret]);
    const room = open(t, srv.url);
    const servers = await room.iceServers();
    assert.equal(servers.length, 2);
    assert.deepEqual(servers[0], { urls: ['stun:127.0.0.1:3478'] });
    const { urls, username, credential } = servers[1];
    assert.deepEqual(urls, ['turn:127.0.0.1:3478?transport=udp']);
    const expiry = Number(username.split(':')[0]);
    assert.ok(Math.abs(expiry - (Date.now() / 1000 + 3600)) < 60, `expiry ${expiry} about an hour ahead`);
    assert.equal(credential, createHmac('sha1', secret).update(username).digest('base64'));
  });

  it('leaves TURN out without a secret', async (t) => {
    const srv = await serverFor(t, ['--stun', 'stun:127.0.0.1:3478']);
    const room = open(t, srv.url);
    assert.deepEqual(await room.iceServers(), [{ urls: ['stun:127.0.0.1:3478'] }]);
  });
});
