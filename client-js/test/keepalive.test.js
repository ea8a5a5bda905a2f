// The client takes its stale-stream timeout from the keep-alive interval the
// server announces when a stream opens, so a server run with a keep-alive
// longer than the client's first guess (45 s) is not taken for dead.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { it } from 'node:test';

import { open, recvLog } from './lib/client.js';
import { startServer, tempDir } from './lib/server.js';
import { sleep, waitFor } from './lib/wait.js';

it('--keepalive 60s: a quiet stream stays open past the 45 s first guess', { timeout: 90_000 }, async (t) => {
  const srv = await startServer({ data: join(tempDir(t), 'db'), args: ['--keepalive', '60s'] });
  t.after(() => srv.stop());
  const room = open(t, srv.url, { room: 'quiet' });
  const offers = recvLog(room, 'offer');
  await waitFor(() => room.states.includes('open'), 'the room to open');
  // 50 s of silence: no frame at all, the first keep-alive is due at 60 s.
  await sleep(50_000);
  assert.deepEqual(room.states, ['connecting', 'open'], 'no reconnect while the server is only quiet');
  assert.equal(room.eventSources.length, 1, 'one stream');
  await room.send('offer', 'o');
  await waitFor(() => offers.includes('o'), 'the offer over the same stream');
});

it('a given staleAfter wins over the server interval', { timeout: 30_000 }, async (t) => {
  const srv = await startServer({ data: join(tempDir(t), 'db'), args: ['--keepalive', '60s'] });
  t.after(() => srv.stop());
  const room = open(t, srv.url, { room: 'impatient', staleAfter: 500 });
  await waitFor(() => room.states.includes('reconnecting'), 'a reconnect after 500 ms of silence', 10_000);
});
