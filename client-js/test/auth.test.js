// sigbase.js against the real server with auth on: tokens minted by
// `sigbase token`, 401 and 403 surfaced with the server's message, and
// tokens that expire under an open stream (auth_revoked): a fixed token
// closes the room, a token function reconnects and resumes without a gap.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SigbaseError, randomRoomName } from '../sigbase.js';
import { childLog, open, recvLog } from './lib/client.js';
import { startProxy } from './lib/proxy.js';
import { metric, mintToken, serverFor } from './lib/server.js';
import { sleep, waitFor } from './lib/wait.js';

const SECRET = 'client-js-auth-test-secret';
const OTHER_SECRET = 'not-the-servers-secret-at-all';

/** A server with auth on, and a minter of its tokens. */
async function authServer(t, args = []) {
  const srv = await serverFor(t, ['--auth-secret', SECRET, ...args]);
  srv.mint = (room, perm = 'read,write', ttl = '1h') => mintToken(SECRET, { room, perm, ttl });
  return srv;
}

/** Resolves to the room's error once it closed on its own. */
async function closedWith(room, what, timeoutMs = 10_000) {
  await waitFor(() => room.state === 'closed', what, timeoutMs);
  return room.error;
}

/** The server's value of a room, read with a token. */
async function serverValue(srv, room, token) {
  const res = await fetch(`${srv.url}/rooms/${room}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return res.json();
}

function revocations(room) {
  return room.eventSources.flatMap((es) => es.controls.filter(([type]) => type === 'auth_revoked'));
}

describe('auth: tokens', () => {
  it('sends and receives with a token string', async (t) => {
    const srv = await authServer(t);
    const name = randomRoomName();
    const token = await srv.mint(name);
    const room = open(t, srv.url, { room: name, token });
    const offer = recvLog(room, 'offer');
    const cands = childLog(room, 'callerCandidates');
    await waitFor(() => offer.length === 1, 'the initial null');
    await room.send('offer', { type: 'offer', sdp: 'v1' });
    const id = await room.push('callerCandidates', { candidate: 'c1' });
    await room.update({ answer: { type: 'answer', sdp: 'a1' } });
    await waitFor(() => offer.length === 2 && cands.length === 1, 'the writes, over the stream');
    assert.deepEqual(offer, [null, { type: 'offer', sdp: 'v1' }]);
    assert.deepEqual(cands, [[id, { candidate: 'c1' }]]);
    assert.deepEqual(await room.get('answer'), { type: 'answer', sdp: 'a1' });
    assert.equal(room.state, 'open');
    assert.equal(room.error, null);
    // The token went as ?auth= on the stream: the server counts one watcher.
    assert.equal(await metric(srv.url, 'sigbase_watchers', '', await srv.mint('*', 'read')), 1);
  });

  it('rejects a write with a read-only token with 403 and the server message; reading still works', async (t) => {
    const srv = await authServer(t);
    const name = randomRoomName();
    const rw = await srv.mint(name);
    const writer = open(t, srv.url, { room: name, token: rw });
    await writer.send('offer', 'o1');

    const reader = open(t, srv.url, { room: name, token: await srv.mint(name, 'read') });
    const got = recvLog(reader, 'offer');
    await waitFor(() => got.length === 1, 'the current value through a read-only stream');
    assert.deepEqual(got, ['o1']);
    for (const attempt of [() => reader.send('offer', 'o2'), () => reader.push('c', 1), () => reader.update({ offer: 'o3' }), () => reader.delete()]) {
      const err = await attempt().then(() => null, (e) => e);
      assert.ok(err instanceof SigbaseError, `got ${err}`);
      assert.equal(err.status, 403);
      assert.equal(err.message, 'token does not grant write');
      assert.deepEqual(err.body, { error: 'token does not grant write' });
    }
    assert.deepEqual(await serverValue(srv, name, rw), { offer: 'o1' }, 'nothing changed');
    assert.equal(reader.state, 'open', 'a refused write does not close the stream');
    await writer.send('offer', 'o4');
    await waitFor(() => got.at(-1) === 'o4', 'later changes on the read-only stream');
  });

  it('closes the room with 403 when the token is write-only', async (t) => {
    const srv = await authServer(t);
    const name = randomRoomName();
    const room = open(t, srv.url, { room: name, token: await srv.mint(name, 'write') });
    await room.send('k', 1); // writing is what it grants
    const err = await closedWith(room, 'the stream to be refused');
    assert.ok(err instanceof SigbaseError);
    assert.equal(err.status, 403);
    assert.equal(err.message, 'token does not grant read');
  });

  it('answers 401 without a token: writes reject, the room closes with the error', async (t) => {
    const srv = await authServer(t);
    const room = open(t, srv.url);
    const states = [];
    room.onstate((s, e) => states.push([s, e?.status]));
    const got = recvLog(room, 'k');
    const err = await room.send('k', 1).then(() => null, (e) => e);
    assert.ok(err instanceof SigbaseError, `got ${err}`);
    assert.equal(err.status, 401);
    assert.match(err.message, /a token is required/);
    const closed = await closedWith(room, 'the stream to be refused');
    assert.equal(closed.status, 401);
    assert.match(closed.message, /a token is required/);
    assert.deepEqual(states.at(-1), ['closed', 401]);
    assert.deepEqual(got, [], 'recv never fired');
    await assert.rejects(room.send('k', 2), /closed/);
  });

  it('answers 401 to a forged token and 403 to a token for another room', async (t) => {
    const srv = await authServer(t);
    const name = randomRoomName();
    const forged = await mintToken(OTHER_SECRET, { room: name });
    const a = open(t, srv.url, { room: name, token: forged });
    await assert.rejects(a.send('k', 1), { name: 'SigbaseError', status: 401, message: 'invalid token' });
    assert.equal((await closedWith(a, 'the forged stream to be refused')).status, 401);

    const b = open(t, srv.url, { room: name, token: await srv.mint(randomRoomName()) });
    await assert.rejects(b.send('k', 1), { name: 'SigbaseError', status: 403, message: 'token is not valid for this room' });
    const err = await closedWith(b, 'the other-room stream to be refused');
    assert.equal(err.status, 403);
    assert.equal(err.message, 'token is not valid for this room');

    // A token for every room ("*") opens this one too.
    const c = open(t, srv.url, { room: name, token: await srv.mint('*') });
    await c.send('k', 'star');
    const got = recvLog(c, 'k');
    await waitFor(() => got.at(-1) === 'star', 'the value through a "*" token');
  });

  it('gets the ICE servers with any valid read token, not without one', async (t) => {
    const srv = await authServer(t, ['--stun', 'stun:127.0.0.1:3478', '--turn', 'turn:127.0.0.1:3478', '--turn-secret', 'turn-secret']);
    const name = randomRoomName();
    const room = open(t, srv.url, { room: name, token: await srv.mint(name, 'read') });
    const servers = await room.iceServers();
    assert.deepEqual(servers[0], { urls: ['stun:127.0.0.1:3478'] });
    assert.equal(servers.length, 2);
    assert.match(servers[1].username, /^\d+:/);
    assert.equal(typeof servers[1].credential, 'string');

    const elsewhere = open(t, srv.url, { room: name, token: await srv.mint(randomRoomName(), 'read') });
    assert.equal((await elsewhere.iceServers()).length, 2, 'a read token for any room will do');
    const none = open(t, srv.url, { room: name });
    await assert.rejects(none.iceServers(), { name: 'SigbaseError', status: 401 });
    const writeOnly = open(t, srv.url, { room: name, token: await srv.mint(name, 'write') });
    await assert.rejects(writeOnly.iceServers(), { name: 'SigbaseError', status: 403, message: 'token does not grant read' });
  });
});

describe('auth: a token that expires under an open stream', () => {
  it('closes the room with a 401 error when the token is a fixed string', async (t) => {
    const srv = await authServer(t);
    const name = randomRoomName();
    const writer = open(t, srv.url, { room: name, token: await srv.mint(name) });
    const short = await srv.mint(name, 'read,write', '2s');
    const room = open(t, srv.url, { room: name, token: short });
    const states = [];
    room.onstate((s, e) => states.push([s, e]));
    const got = recvLog(room, 'k');
    await room.send('k', 'before');
    await waitFor(() => got.at(-1) === 'before', 'the value before expiry');

    const err = await closedWith(room, 'auth_revoked to close the room', 8_000);
    assert.deepEqual(revocations(room), [['auth_revoked', '"token expired"']], 'the server said why');
    assert.ok(err instanceof SigbaseError, `got ${err}`);
    assert.equal(err.status, 401);
    assert.equal(err.message, 'token expired');
    const [last, lastErr] = states.at(-1);
    assert.equal(last, 'closed');
    assert.equal(lastErr, err, 'onstate reported the error with the close');
    assert.ok(!states.some(([s]) => s === 'reconnecting'), `no retry with a dead token: ${states.map(([s]) => s)}`);
    assert.ok(room.eventSources.every((es) => es.readyState === 2), 'the EventSource is closed');

    await writer.send('k', 'after');
    await sleep(300);
    assert.deepEqual(got.filter((v) => v !== null), ['before'], 'no handler runs after the close');
    await assert.rejects(room.send('k', 'x'), /closed/);
    const res = await fetch(`${srv.url}/rooms/${name}`, { headers: { Authorization: `Bearer ${short}` } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /Bearer/);
    assert.deepEqual(await res.json(), { error: 'token expired' });
  });

  it('reconnects with a fresh token from a token function, resuming: nothing lost, nothing twice', async (t) => {
    const srv = await authServer(t);
    const name = randomRoomName();
    let minted = 0;
    const token = async () => { minted++; return srv.mint(name, 'read', '2s'); };
    const watcher = open(t, srv.url, { room: name, token });
    const kids = childLog(watcher, 'callerCandidates');
    const offer = recvLog(watcher, 'offer');
    const writer = open(t, srv.url, { room: name, token: await srv.mint(name) });
    await writer.send('offer', 'o1');
    await waitFor(() => watcher.state === 'open', 'the first stream');

    // Write steadily across at least two expiries of the watcher's token.
    const ids = [];
    const until = Date.now() + 4_500;
    for (let i = 0; Date.now() < until; i++) {
      ids.push(await writer.push('callerCandidates', { n: i }));
      await sleep(40);
    }
    await waitFor(() => revocations(watcher).length >= 2, 'two auth_revoked events', 5_000);
    const last = await writer.push('callerCandidates', { n: 'last' });
    ids.push(last);
    await waitFor(() => kids.length >= ids.length, 'every child', 10_000);
    await sleep(300);
    assert.deepEqual(kids.ids(), ids, 'each child once, in push order');
    assert.deepEqual(offer.filter((v) => v !== null), ['o1'], 'recv fired once for the unchanged offer');
    assert.equal(watcher.error, null);
    assert.notEqual(watcher.state, 'closed');
    assert.ok(minted >= 3, `a fresh token per stream: minted ${minted}`);
    const streams = watcher.eventSources;
    assert.ok(streams.length >= 3, `one stream per token: ${streams.length}`);
    for (const es of streams.slice(1)) {
      assert.match(es.url, /[?&]last_event_id=\d+/, 'each new stream resumes after the last revision');
    }
    const star = await srv.mint('*', 'read');
    assert.ok(await metric(srv.url, 'sigbase_resumes_total', 'outcome="replay"', star) >= 2, 'resumed from the log');
    assert.equal(await metric(srv.url, 'sigbase_resumes_total', 'outcome="snapshot"', star), 0, 'never a snapshot');
    assert.deepEqual(watcher.states.filter((s) => s === 'closed'), []);
  });

  it('asks the token function again when the stream comes back after its token expired offline', async (t) => {
    const srv = await authServer(t);
    const proxy = await startProxy(t, srv.url);
    const name = randomRoomName();
    let minted = 0;
    const watcher = open(t, proxy.url, { room: name, token: async () => { minted++; return srv.mint(name, 'read', '2s'); } });
    const kids = childLog(watcher, 'c');
    const writer = open(t, srv.url, { room: name, token: await srv.mint(name) });
    const ids = [await writer.push('c', 0)];
    await waitFor(() => kids.length === 1, 'the first child');

    proxy.cut(); // no auth_revoked can reach the client now
    await waitFor(() => watcher.state === 'reconnecting', 'the client to notice');
    ids.push(await writer.push('c', 1));
    await sleep(2_500); // the stream's token expires meanwhile
    ids.push(await writer.push('c', 2));
    const before = minted;
    proxy.restore(); // the EventSource retries its URL, expired token and all: 401
    await waitFor(() => kids.length >= ids.length, 'the children written while cut', 10_000);
    await sleep(300);
    assert.deepEqual(kids.ids(), ids, 'each child once, in push order');
    assert.equal(watcher.error, null);
    assert.equal(watcher.state, 'open');
    assert.ok(minted > before, 'a fresh token after the 401');
    assert.ok(watcher.eventSources.length >= 2, 'a new stream, with the new token');
  });
});
