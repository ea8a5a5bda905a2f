// Room members: a client that joins as a member has members/{id} while it
// is connected; the server removes it (onDisconnect) once the client's
// stream is gone past the grace period, and a reconnect in time keeps it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { it } from 'node:test';

import { open } from './lib/client.js';
import { startProxy } from './lib/proxy.js';
import { startServer, tempDir } from './lib/server.js';
import { sleep, waitFor } from './lib/wait.js';

// Long enough for a client to reconnect after a blip (EventSource waits its
// retry: of 1 s), short enough for the test.
const GRACE_MS = 3000;

async function server(t) {
  const srv = await startServer({ data: join(tempDir(t), 'db'), args: ['--disconnect-grace', `${GRACE_MS}ms`] });
  t.after(() => srv.stop());
  return srv;
}

function membersLog(room) {
  const seen = [];
  room.members((m) => seen.push(Object.keys(m).sort().join(',')));
  return seen;
}

it('members join, see each other, and leave() removes one at once', { timeout: 30_000 }, async (t) => {
  const srv = await server(t);
  const ann = open(t, srv.url, { room: 'call', member: { id: 'ann', name: 'Ann' } });
  const bob = open(t, srv.url, { room: 'call', member: { id: 'bob', name: 'Bob' } });
  const annSees = membersLog(ann);
  await waitFor(() => annSees.at(-1) === 'ann,bob', 'Ann to see both members');
  const entry = await ann.get('members/bob');
  assert.equal(entry.name, 'Bob');
  assert.ok(Number.isInteger(entry.joinedAt) && entry.joinedAt > Date.now() - 60_000, `joinedAt ${entry.joinedAt} is a server time`);
  const left = Date.now();
  await bob.leave();
  await waitFor(() => annSees.at(-1) === 'ann', 'Ann to see Bob leave');
  assert.ok(Date.now() - left < GRACE_MS, 'leave() does not wait for the grace period');
  assert.equal(bob.state, 'closed');
});

it('a member whose connection is gone past the grace period is removed, and rejoins when it is back', { timeout: 30_000 }, async (t) => {
  const srv = await server(t);
  const proxy = await startProxy(t, srv.url);
  const ann = open(t, srv.url, { room: 'call2', member: { id: 'ann' } });
  const bob = open(t, proxy.url, { room: 'call2', member: { id: 'bob' } });
  const annSees = membersLog(ann);
  await waitFor(() => annSees.at(-1) === 'ann,bob', 'both members');

  // A blip shorter than the grace period: Bob stays.
  const before = annSees.length;
  proxy.cut();
  await waitFor(() => bob.state === 'reconnecting', 'Bob to notice the cut');
  proxy.restore();
  await waitFor(() => bob.state === 'open', 'Bob back', 10_000);
  await sleep(2 * GRACE_MS);
  assert.equal(annSees.at(-1), 'ann,bob', 'a reconnect within the grace period is no leave');
  assert.ok(!annSees.slice(before).includes('ann'), `Bob never seen gone: ${annSees}`);

  // Gone for longer: Bob is removed, then rejoins on his own.
  proxy.cut();
  await waitFor(() => annSees.at(-1) === 'ann', 'Bob removed after the grace period', 10_000);
  proxy.restore();
  await waitFor(() => annSees.at(-1) === 'ann,bob', 'Bob to rejoin', 15_000);
});
