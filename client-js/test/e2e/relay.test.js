// Issue 5: a relay-only call through Debian's coturn on loopback, with TURN
// credentials minted by sigbase (/ice-servers). The right shared secret
// connects through a relay candidate; a wrong one must not connect at all,
// and the page must say that it got no relay candidates.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';

import { serverFor, tempDir } from '../lib/server.js';
import { sleep, waitFor } from '../lib/wait.js';
import { assertLoopbackOnly, launch, noPageErrors, openPage, roomName, screenshot, selectedLocalCandidateType } from './browser.js';

before(assertLoopbackOnly);

const SECRET = 'relay-test-secret';

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Starts turnserver on 127.0.0.1 with the TURN REST shared secret. */
async function startCoturn(t) {
  const port = await freePort();
  const log = join(tempDir(t, 'coturn-'), 'turn.log');
  const proc = spawn('turnserver', [
    '-n', // no configuration file
    '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    '--min-port=40000', '--max-port=40999',
    '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=sigbase.test',
    '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', '--no-multicast-peers',
    `--log-file=${log}`, '--simple-log', '--no-stdout-log', '--verbose',
  ], { stdio: 'ignore' });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  t.after(async () => {
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  });
  await waitFor(() => new Promise((resolve) => {
    if (proc.exitCode !== null) throw new Error(`turnserver exited with ${proc.exitCode}`);
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }), 'turnserver to listen');
  return { url: `turn:127.0.0.1:${port}?transport=udp`, log: () => readFileSync(log, 'utf8') };
}

/** Opens the demo as caller and callee, relay only; resolves to both pages. */
async function relayCall(browser, url, hash = '') {
  const caller = await openPage(browser, `${url}/#relay=1${hash}`, 'caller');
  await caller.click('#create');
  const name = await roomName(caller);
  const callee = await openPage(browser, `${url}/#room=${name}&relay=1${hash}`, 'callee');
  for (const page of [caller, callee]) {
    await page.waitForFunction(() => window.sigbaseDemo.call?.pc.getConfiguration().iceTransportPolicy === 'relay');
  }
  return { caller, callee };
}

describe('a relay-only call through coturn', () => {
  it('connects through a relay candidate with credentials from /ice-servers', async (t) => {
    const browser = await launch(t);
    const turn = await startCoturn(t);
    const srv = await serverFor(t, ['--turn', turn.url, '--turn-secret', SECRET]);
    const { caller, callee } = await relayCall(browser, srv.url);
    try {
      await Promise.all([caller, callee].map((p) => p.waitForFunction(() => window.sigbaseDemo.marks.channelOpen !== undefined)));
    } catch (err) {
      console.log(turn.log());
      throw err;
    }
    assert.equal(await selectedLocalCandidateType(caller), 'relay');
    assert.equal(await selectedLocalCandidateType(callee), 'relay');
    const marks = await callee.evaluate(() => window.sigbaseDemo.marks);
    console.log(`TIMING relay callee: page load -> data channel open ${Math.round(marks.channelOpen)} ms`);
    await Promise.all([screenshot(caller, 'relay-caller.png'), screenshot(callee, 'relay-callee.png')]);
    noPageErrors(caller, callee);
  });

  it('does not connect when sigbase mints credentials with the wrong secret', async (t) => {
    const browser = await launch(t);
    const turn = await startCoturn(t);
    const srv = await serverFor(t, ['--turn', turn.url, '--turn-secret', 'not-the-secret']);
    const { caller, callee } = await relayCall(browser, srv.url, '&ice-timeout=3');
    await caller.waitForFunction(() => window.sigbaseDemo.call?.pc.iceGatheringState === 'complete');
    await sleep(8000);
    for (const page of [caller, callee]) {
      assert.equal(await page.evaluate(() => window.sigbaseDemo.marks.channelOpen), undefined, 'no data channel');
      const relayCandidates = await page.evaluate(async () => {
        const stats = await window.sigbaseDemo.call.pc.getStats();
        return [...stats.values()].filter((s) => s.type === 'local-candidate' && s.candidateType === 'relay').length;
      });
      assert.equal(relayCandidates, 0, 'coturn refused the allocation');
      // The page says so rather than waiting on: past #ice-timeout=3.
      assert.match(await page.$eval('#problem', (p) => (p.hidden ? '' : p.textContent)),
        /^Not connected after 3 s: no relay candidates: .*refused the credentials.*\(iceGatheringState complete, iceConnectionState \w+, connectionState \w+\)$/);
    }
    assert.match(turn.log(), /401/, 'coturn answered 401 Unauthorized');
  });
});
