// sigbase.js keeps its local copy exact across reconnects: server restarts,
// dropped connections, evictions (cancel) and fresh snapshots. Every child
// reaches recvChild exactly once.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { childLog, open, recvLog, restWriter } from './lib/client.js';
import { startProxy } from './lib/proxy.js';
import { metric, startServer, tempDir } from './lib/server.js';
import { sleep, waitFor } from './lib/wait.js';

/** A restartable server: restart() keeps the address and, unless told, the data. */
async function restartable(t, args = []) {
  const dir = tempDir(t);
  const box = { srv: await startServer({ data: join(dir, 'db'), args }) };
  box.restart = async ({ signal = 'SIGTERM', freshData = false } = {}) => {
    await box.srv.stop(signal);
    const data = freshData ? join(dir, `db-${Date.now()}`) : box.srv.data;
    box.srv = await startServer({ data, addr: box.srv.addr, args });
  };
  t.after(() => box.srv.stop());
  return box;
}

/** Pushes n children to key through a separate room; resolves to their ids. */
async function pushAll(room, key, from, n) {
  const ids = [];
  for (let i = from; i < from + n; i++) ids.push(await room.push(key, { n: i }));
  return ids;
}

/** Waits for exactly the given ids, then a little longer for any duplicate. */
async function expectChildren(calls, ids, what) {
  await waitFor(() => calls.length >= ids.length, what, 20_000);
  await sleep(300);
  assert.deepEqual(calls.ids(), ids, 'each child once, in push order');
}

function reconnectedOnce(room) {
  const i = room.states.indexOf('reconnecting');
  return i > 0 && room.states.indexOf('open', i) > i;
}

describe('recvChild across reconnects', () => {
  it('delivers each child once across a graceful server restart (cancel, resume from the durable log)', async (t) => {
    const box = await restartable(t);
    const watcher = open(t, box.srv.url);
    const got = childLog(watcher, 'callerCandidates');
    const value = recvLog(watcher, 'offer');
    const writer = restWriter(box.srv.url, watcher.name);
    await writer.send('offer', 'o1');
    const ids = await pushAll(writer, 'callerCandidates', 0, 3);
    await waitFor(() => got.length === 3, 'the first children');

    await box.restart();
    await waitFor(() => reconnectedOnce(watcher), 'a reconnect', 15_000);
    ids.push(...(await pushAll(writer, 'callerCandidates', 3, 3)));
    await expectChildren(got, ids, 'the children after the restart');
    assert.equal(await metric(box.srv.url, 'sigbase_resumes_total', 'outcome="replay"'), 1);
    assert.deepEqual(value.filter((v) => v !== null), ['o1'], 'recv fired once for the unchanged offer');
  });

  it('delivers children written while disconnected, once, across a dropped connection and a killed server', async (t) => {
    const box = await restartable(t);
    const proxy = await startProxy(t, box.srv.url);
    const watcher = open(t, proxy.url);
    const got = childLog(watcher, 'calleeCandidates');
    const writer = restWriter(box.srv.url, watcher.name);
    const ids = await pushAll(writer, 'calleeCandidates', 0, 3);
    await waitFor(() => got.length === 3, 'the first children');

    proxy.cut();
    await waitFor(() => watcher.state === 'reconnecting', 'the client to notice');
    ids.push(...(await pushAll(writer, 'calleeCandidates', 3, 2)));
    await box.restart({ signal: 'SIGKILL' });
    ids.push(...(await pushAll(writer, 'calleeCandidates', 5, 2)));
    await sleep(200);
    assert.equal(got.length, 3, 'nothing arrives while cut');
    proxy.restore();
    await expectChildren(got, ids, 'the children written while disconnected');
    assert.ok(reconnectedOnce(watcher), `states: ${watcher.states}`);
    assert.equal(await metric(box.srv.url, 'sigbase_resumes_total', 'outcome="replay"'), 1);
  });

  it('delivers each child once when the server evicts a slow watcher with cancel', async (t) => {
    // Bursts of parallel writes from one address: no rate limit here.
    const box = await restartable(t, ['--watch-queue', '1', '--rate-limit', '0']);
    const watcher = open(t, box.srv.url);
    const got = childLog(watcher, 'c');
    const writer = restWriter(box.srv.url, watcher.name);
    await waitFor(() => watcher.state === 'open', 'open');
    const ids = [];
    for (let burst = 0; burst < 10 && (await metric(box.srv.url, 'sigbase_watchers_evicted_total')) === 0; burst++) {
      const pushes = Array.from({ length: 40 }, (_, i) => writer.push('c', { burst, i }));
      ids.push(...(await Promise.all(pushes)));
    }
    assert.ok((await metric(box.srv.url, 'sigbase_watchers_evicted_total')) >= 1, 'a burst evicted the watcher');
    await waitFor(() => reconnectedOnce(watcher), 'a reconnect after cancel');
    await expectChildren(got, ids.sort(), 'every child of the bursts');
  });

  it('delivers each new child once when the resume point is gone and the server sends a fresh snapshot', async (t) => {
    const box = await restartable(t, ['--max-log-entries', '2']);
    const proxy = await startProxy(t, box.srv.url);
    const watcher = open(t, proxy.url);
    const got = childLog(watcher, 'c');
    const offer = recvLog(watcher, 'offer');
    const writer = restWriter(box.srv.url, watcher.name);
    await writer.send('offer', 'o1');
    const ids = await pushAll(writer, 'c', 0, 2);
    await waitFor(() => got.length === 2, 'the first children');

    proxy.cut();
    await waitFor(() => watcher.state === 'reconnecting', 'the client to notice');
    ids.push(...(await pushAll(writer, 'c', 2, 5)));
    proxy.restore();
    await expectChildren(got, ids, 'the new children from the snapshot');
    assert.equal(await metric(box.srv.url, 'sigbase_resumes_total', 'outcome="snapshot"'), 1);
    assert.deepEqual(offer.filter((v) => v !== null), ['o1'], 'recv fired once for the unchanged offer');
  });
});

describe('a server that lost its data', () => {
  it('replaces the local copy with its snapshot, though its revisions start again', async (t) => {
    const box = await restartable(t);
    const watcher = open(t, box.srv.url);
    const got = recvLog(watcher, 'k');
    const writer = restWriter(box.srv.url, watcher.name);
    for (let i = 1; i <= 5; i++) await writer.send('k', i);
    await waitFor(() => got.at(-1) === 5, 'the writes');

    await box.restart({ freshData: true });
    await waitFor(() => got.at(-1) === null, 'the empty snapshot', 15_000);
    await writer.send('k', 'after');
    await waitFor(() => got.at(-1) === 'after', 'a write at a lower revision than before');
  });
});
