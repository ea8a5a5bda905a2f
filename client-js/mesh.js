// A group call (full mesh) signaled through a sigbase room: one
// RTCPeerConnection per pair of members, up to maxPeers members. Shipped as
// written; needs a browser's RTCPeerConnection.
//
// Who is in the call: the room's members (connect(url, {room, member})),
// ordered by joinedAt, then id; the first maxPeers of them. A later joiner
// gets an Error "room full" and leaves the room.
//
// Signaling, per pair: each member reads its own inbox, the key
// `inbox-{id}`, with recvChild; the others push {from, sid, to, description
// | candidate} there. sid is the sender's session of this pair (random each
// time it sets the pair up: on joining, or when the peer comes back after
// its entry was deleted), to the recipient's once the sender has heard it: a
// message for an earlier session is ignored, and one from a new session of
// the peer starts the pair over. Messages from members outside the call are
// ignored.
//
// Negotiation is the W3C "perfect negotiation" pattern: both sides may
// offer; on a collision the polite side (the smaller id) rolls back and
// answers, the impolite one ignores the other's offer. The first offer of
// a pair is the impolite side's: the polite one offers only when none came
// within 2 s. A pair whose connection fails, or that is not connected
// within 10 s, restarts ICE. A data channel per pair (negotiated, id 0)
// carries call.send(text).

const DEFAULT_MAX_PEERS = 6;
const JOIN_TIMEOUT_MS = 15_000;
// The polite side of a new pair leaves the first offer to the other side for
// this long: Chromium's gathering can stall for good on a side that rolled
// back an offer it was still gathering for (a pair stuck in 'new').
const FIRST_OFFER_DELAY_MS = 2_000;
// A pair not connected for this long restarts ICE (from its impolite side,
// so that the two restarts do not collide); 'failed' restarts at once.
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Joins the group call in room (a sigbase Room connected with a member) and
 * resolves to its MeshCall once this member is admitted. Rejects with
 * "room full" when maxPeers members joined before it (and leaves the room).
 */
export async function joinRoom(room, options = {}) {
  const me = room?.memberId;
  if (!me) throw new TypeError('sigbase/mesh: the room must be connected with a member: connect(url, {room, member: {id, name}})');
  if (`inbox-${me}`.length > 64) throw new TypeError('sigbase/mesh: member id must be at most 58 characters');
  const maxPeers = options.maxPeers ?? DEFAULT_MAX_PEERS;
  if (!Number.isInteger(maxPeers) || maxPeers < 1) throw new TypeError('sigbase/mesh: maxPeers must be a positive integer');
  const iceServers = options.config?.iceServers ?? (await room.iceServers());
  const members = await ownEntry(room, me, options.joinTimeoutMs ?? JOIN_TIMEOUT_MS);
  const rank = admitted(members, maxPeers).indexOf(me);
  if (rank < 0) {
    await room.leave().catch(() => {});
    throw new Error(`sigbase/mesh: room full: ${maxPeers} members are in the call already`);
  }
  const call = new MeshCall(room, { ...options, maxPeers, config: { ...options.config, iceServers } });
  call.start();
  return call;
}

// ownEntry resolves to the members map once it holds this member's entry
// (the room writes it after its first snapshot).
function ownEntry(room, me, timeoutMs) {
  return new Promise((resolve, reject) => {
    let unsubscribe = () => {};
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`sigbase/mesh: not in the room's members after ${timeoutMs} ms (state ${room.state})`));
    }, timeoutMs);
    unsubscribe = room.members((members) => {
      if (!Number.isFinite(members[me]?.joinedAt)) return;
      clearTimeout(timer);
      queueMicrotask(() => unsubscribe());
      resolve(members);
    });
  });
}

/** The ids of the members in the call: the first maxPeers by joinedAt, then id. */
export function admitted(members, maxPeers = DEFAULT_MAX_PEERS) {
  return Object.entries(members ?? {})
    .filter(([, m]) => Number.isFinite(m?.joinedAt))
    .sort(([a, ma], [b, mb]) => ma.joinedAt - mb.joinedAt || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, maxPeers)
    .map(([id]) => id);
}

export class MeshCall {
  room;
  /** This member's id. */
  id;
  /** The peers, by member id. */
  peers = new Map();
  #opts;
  #unsubscribe = [];
  #left = false;

  constructor(room, options) {
    this.room = room;
    this.id = room.memberId;
    this.#opts = options;
  }

  /** True once leave() was called or the room closed. */
  get left() { return this.#left; }

  start() {
    // Members first: a message is only taken from a peer already seen there
    // (its entry is written before it can send anything).
    this.#unsubscribe.push(this.room.members((members) => this.#onMembers(members)));
    this.#unsubscribe.push(this.room.recvChild(`inbox-${this.id}`, (msg) => this.#onMessage(msg)));
    this.#unsubscribe.push(this.room.onstate((state) => { if (state === 'closed') this.#stop(); }));
  }

  #onMembers(members) {
    if (this.#left) return;
    const inCall = new Set(admitted(members, this.#opts.maxPeers));
    for (const [id, peer] of this.peers) {
      if (!inCall.has(id)) this.#dropPeer(id, peer);
    }
    for (const id of inCall) {
      if (id !== this.id && !this.peers.has(id)) this.#addPeer(id, members[id]);
    }
  }

  #addPeer(id, member) {
    const peer = new Peer(this, id, String(member?.name ?? id), this.#opts);
    this.peers.set(id, peer);
    this.#call('onPeerJoined', id, { name: peer.name });
    peer.open();
  }

  #dropPeer(id, peer) {
    this.peers.delete(id);
    peer.close();
    this.#call('onPeerLeft', id);
  }

  #onMessage(msg) {
    if (this.#left || typeof msg?.from !== 'string') return;
    const peer = this.peers.get(msg.from);
    if (!peer) return; // not in the call (or not yet seen in members: it will offer again on its own)
    if (msg.to !== undefined && msg.to !== peer.sid) return; // for an earlier session of this pair
    peer.receive(msg);
  }

  /** Sends text to every peer whose data channel is open; returns how many. */
  send(text) {
    let n = 0;
    for (const peer of this.peers.values()) {
      if (peer.channel.readyState === 'open') {
        peer.channel.send(String(text));
        n++;
      }
    }
    return n;
  }

  /** Closes every peer connection, deletes this member's inbox and leaves the room. */
  async leave() {
    if (this.#left) return;
    this.#stop();
    // Both requests go out at once (a page being closed may not wait for a
    // second one); leave() closes the room once its DELETE is answered.
    const inbox = this.room.remove(`inbox-${this.id}`);
    const member = this.room.leave();
    await Promise.allSettled([inbox, member]);
  }

  #stop() {
    if (this.#left) return;
    this.#left = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#unsubscribe = [];
    for (const [id, peer] of [...this.peers]) this.#dropPeer(id, peer);
  }

  // internal: used by Peer
  signal(peer, body) {
    if (this.#left || peer.closed) return;
    const msg = { from: this.id, sid: peer.sid, ...body };
    if (peer.remoteSid) msg.to = peer.remoteSid;
    // One at a time per pair: concurrent POSTs could reach the server, and
    // so the inbox, in another order (a candidate before its offer).
    peer.outbox = peer.outbox
      .then(() => (this.#left ? undefined : this.room.push(`inbox-${peer.id}`, msg)))
      .catch((err) => this.report(err));
  }

  report(err) {
    if (this.#opts.onError) this.#opts.onError(err);
    else console.warn('sigbase/mesh:', err);
  }

  #call(name, ...args) {
    try {
      this.#opts[name]?.(...args);
    } catch (err) {
      this.report(err);
    }
  }

  // internal: Peer's callbacks go through here so one that throws is reported
  emit(name, ...args) { this.#call(name, ...args); }
}

/** One member of the call, seen from here: its peer connection and channel. */
class Peer {
  id;
  name;
  pc = null;
  channel = null;
  /** Its tracks, gathered in one stream. */
  stream = new MediaStream();
  /** The tail of this pair's outgoing messages (sent in order). */
  outbox = Promise.resolve();
  /** This side's session of the pair: tags every message sent to the peer. */
  sid = randomId();
  /** The peer's session: learned from its first message. */
  remoteSid = null;
  /** Counters, for tests and the curious. */
  stats = { offersSent: 0, offersReceived: 0, collisions: 0, iceRestarts: 0, candidatesSent: 0, candidatesAdded: 0, candidatesDropped: 0 };
  polite;
  #call;
  #opts;
  #makingOffer = false;
  #ignoreOffer = false;
  #queue = Promise.resolve();
  #closed = false;
  #timers = [];
  #firstOfferDue = false;
  #retiredSids = new Set(); // the peer's earlier sessions: their late messages are ignored

  constructor(call, id, name, options) {
    this.#call = call;
    this.id = id;
    this.name = name;
    this.#opts = options;
    this.polite = call.id < id;
  }

  get state() { return this.pc?.connectionState ?? 'closed'; }

  get closed() { return this.#closed; }

  open() {
    const pc = new RTCPeerConnection(this.#opts.config);
    this.pc = pc;
    const mine = (fn) => (ev) => { if (this.pc === pc && !this.#closed) fn(ev); };
    pc.addEventListener('negotiationneeded', mine(() => {
      if (this.polite && !pc.remoteDescription && !this.#firstOfferDue) return; // see FIRST_OFFER_DELAY_MS
      this.#negotiate(pc);
    }));
    this.#firstOfferDue = !this.polite;
    this.#later(FIRST_OFFER_DELAY_MS, () => {
      this.#firstOfferDue = true;
      if (this.pc === pc && !pc.remoteDescription && pc.signalingState === 'stable') this.#negotiate(pc);
    });
    this.#watchdog(pc);
    pc.addEventListener('icecandidate', mine(({ candidate }) => {
      if (!candidate) return;
      this.stats.candidatesSent++;
      this.#call.signal(this, { candidate: candidate.toJSON() });
    }));
    pc.addEventListener('track', mine((ev) => {
      this.stream.addTrack(ev.track);
      ev.track.addEventListener('ended', () => this.stream.removeTrack(ev.track), { once: true });
      this.#call.emit('onTrack', this.id, ev.track, this.stream);
    }));
    pc.addEventListener('connectionstatechange', mine(() => {
      const state = pc.connectionState;
      if (state === 'failed') {
        this.stats.iceRestarts++;
        pc.restartIce(); // negotiationneeded follows: a new offer with fresh ICE credentials
      }
      this.#call.emit('onPeerState', this.id, state);
    }));
    this.channel = pc.createDataChannel('sigbase-mesh', { negotiated: true, id: 0 });
    this.channel.addEventListener('message', (ev) => {
      if (!this.#closed) this.#call.emit('onMessage', this.id, String(ev.data));
    });
    const { stream } = this.#opts;
    if (stream) {
      for (const track of stream.getTracks()) pc.addTrack(track, stream);
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
  }

  #later(ms, fn) {
    const id = setTimeout(() => {
      this.#timers = this.#timers.filter((t) => t !== id);
      if (!this.#closed) fn();
    }, ms);
    this.#timers.push(id);
  }

  // #watchdog restarts ICE, from the impolite side, while the pair is not
  // connected: every CONNECT_TIMEOUT_MS until it is.
  #watchdog(pc) {
    this.#later(CONNECT_TIMEOUT_MS, () => {
      if (this.pc !== pc) return;
      if (!this.polite && pc.connectionState !== 'connected') {
        this.stats.iceRestarts++;
        pc.restartIce();
      }
      this.#watchdog(pc);
    });
  }

  async #negotiate(pc) {
    try {
      this.#makingOffer = true;
      await pc.setLocalDescription();
      if (this.pc !== pc || this.#closed) return;
      this.stats.offersSent++;
      this.#call.signal(this, { description: describe(pc.localDescription) });
    } catch (err) {
      if (!this.#closed) this.#call.report(err);
    } finally {
      this.#makingOffer = false;
    }
  }

  // receive takes the peer's messages one at a time, in order.
  receive(msg) {
    this.#queue = this.#queue.then(() => this.#handle(msg)).catch((err) => {
      if (!this.#closed) this.#call.report(err);
    });
  }

  async #handle(msg) {
    if (this.#closed) return;
    if (typeof msg.sid !== 'string' || this.#retiredSids.has(msg.sid)) return;
    if (this.remoteSid === null) {
      this.remoteSid = msg.sid;
    } else if (msg.sid !== this.remoteSid) {
      // The peer started over (a new joinRoom with the same member id):
      // so does this pair.
      this.#restart(msg.sid);
    }
    const { pc } = this;
    const { description, candidate } = msg;
    if (description) {
      if (description.type !== 'offer' && description.type !== 'answer') return;
      if (description.type === 'offer') this.stats.offersReceived++;
      const collision = description.type === 'offer' && (this.#makingOffer || pc.signalingState !== 'stable');
      if (collision) this.stats.collisions++;
      this.#ignoreOffer = !this.polite && collision;
      if (this.#ignoreOffer) return;
      if (description.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // a stale answer
      await pc.setRemoteDescription(description); // the polite side rolls back its own offer here
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        if (this.pc !== pc || this.#closed) return;
        this.#call.signal(this, { description: describe(pc.localDescription) });
      }
    } else if (candidate) {
      try {
        await pc.addIceCandidate(candidate);
        this.stats.candidatesAdded++;
      } catch (err) {
        this.stats.candidatesDropped++;
        if (!this.#ignoreOffer) throw err;
      }
    }
  }

  #restart(sid) {
    for (const id of this.#timers) clearTimeout(id);
    this.#timers = [];
    this.pc.close();
    this.stream = new MediaStream();
    this.#retiredSids.add(this.remoteSid);
    this.remoteSid = sid;
    this.#makingOffer = false;
    this.#ignoreOffer = false;
    this.open();
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of this.#timers) clearTimeout(id);
    this.#timers = [];
    this.channel?.close();
    this.pc?.close();
    for (const track of this.stream.getTracks()) track.stop();
  }
}

function describe(desc) {
  return { type: desc.type, sdp: desc.sdp };
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_');
}
