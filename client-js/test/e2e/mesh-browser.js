// Pages in a group call: each one a fresh Chromium context on the server's
// own origin (its demo page, left in the lobby), where mesh.js is imported
// as shipped (/client/mesh.js) and driven through window.meshTest.
import { openPage } from './browser.js';

/**
 * Opens a page as member id of room and connects it (connect with a member).
 * With join (the default) it joins the call too; else call page.join().
 */
export async function meshPage(browser, url, room, id, { join = true, maxPeers } = {}) {
  const page = await openPage(browser, `${url}/`, id);
  await page.evaluate(async ({ room, id, maxPeers }) => {
    const { connect } = await import('/client/sigbase.js');
    const { joinRoom } = await import('/client/mesh.js');
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120, frameRate: 10 }, audio: false });
    const t = {
      joined: [], left: [], messages: [], states: [], tracks: {}, errors: [], error: null, call: null, allAt: null,
      room: connect(location.origin, { room, member: { id, name: `name-${id}` } }),
    };
    window.meshTest = t;
    t.join = async () => {
      try {
        t.call = await joinRoom(t.room, {
          stream,
          maxPeers,
          onPeerJoined: (peer) => t.joined.push(peer),
          onPeerLeft: (peer) => t.left.push({ id: peer, at: performance.now() }),
          onMessage: (from, text) => t.messages.push({ from, text }),
          onTrack: (peer, track) => { (t.tracks[peer] ??= []).push(track.kind); },
          onPeerState: (peer, state) => t.states.push(`${peer}:${state}`),
          onError: (err) => t.errors.push(String(err?.message ?? err)),
        });
      } catch (err) {
        t.error = err.message;
      }
    };
    // Every one of n-1 peers connected, with an open channel and a video track.
    t.allConnected = (n) => {
      const peers = [...(t.call?.peers.values() ?? [])];
      const ok = peers.length === n - 1 && peers.every((p) => p.pc.connectionState === 'connected'
        && p.channel.readyState === 'open' && p.stream.getVideoTracks().length > 0);
      if (ok && t.allAt === null) t.allAt = performance.now();
      return ok;
    };
  }, { room, id, maxPeers });
  page.join = () => page.evaluate(() => window.meshTest.join());
  if (join) await page.join();
  return page;
}

/** Waits (bounded) until the page is connected to n-1 peers; resolves to ms since its page load. */
export async function allConnected(page, n, timeout = 60_000) {
  try {
    await page.waitForFunction((k) => window.meshTest.allConnected(k), n, { polling: 50, timeout });
  } catch (err) {
    throw new Error(`${err.message}\n${await diagnose(page)}`);
  }
  return page.evaluate(() => window.meshTest.allAt);
}

/** The page's peers, their states and counters, for a failure's message. */
export async function diagnose(page) {
  {
    const why = await page.evaluate(() => ({
      id: window.meshTest.room.memberId,
      error: window.meshTest.error,
      errors: window.meshTest.errors,
      peers: [...(window.meshTest.call?.peers ?? [])].map(([id, p]) => `${id}: ${p.pc.connectionState}/${p.pc.signalingState}/${p.pc.iceConnectionState} channel ${p.channel.readyState} video ${p.stream.getVideoTracks().length} ${JSON.stringify(p.stats)} polite ${p.polite} gathering ${p.pc.iceGatheringState} local ${p.pc.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1]} remote ${p.pc.remoteDescription?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1]} remoteCands ${(p.pc.remoteDescription?.sdp.match(/a=candidate/g) ?? []).length}`),
    })).catch((e) => e.message);
    return JSON.stringify(why, null, 1);
  }
}

/** Frames decoded from each peer's video, by peer id. */
export function framesDecoded(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const [id, peer] of window.meshTest.call.peers) {
      const stats = await peer.pc.getStats();
      out[id] = [...stats.values()].filter((s) => s.type === 'inbound-rtp' && s.kind === 'video')
        .reduce((sum, s) => sum + (s.framesDecoded ?? 0), 0);
    }
    return out;
  });
}

/** Summary of the page's call state. */
export function meshState(page) {
  return page.evaluate(() => {
    const t = window.meshTest;
    return {
      error: t.error,
      errors: t.errors,
      left: t.left.map((l) => l.id),
      messages: t.messages,
      peers: [...(t.call?.peers.keys() ?? [])].sort(),
      stats: Object.fromEntries([...(t.call?.peers ?? [])].map(([id, p]) => [id, p.stats])),
    };
  });
}
