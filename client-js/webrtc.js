// A WebRTC call signaled through a sigbase room: the caller writes `offer`,
// the callee `answer`; each pushes its ICE candidates to `callerCandidates`
// or `calleeCandidates` and takes the other's with recvChild. Shipped as
// written; needs a browser's RTCPeerConnection.
//
// Every offer carries a random session id, `sid`, which the answer and all
// candidates repeat: an answer or a candidate left in the room by an earlier
// call is never applied to this one.

const KEYS = {
  caller: { mine: 'callerCandidates', theirs: 'calleeCandidates' },
  callee: { mine: 'calleeCandidates', theirs: 'callerCandidates' },
};

/**
 * Starts a call in room as 'caller' or 'callee' and resolves to its Call once
 * it is wired (the caller's offer is written; the callee waits for it).
 * The ICE servers come from room.iceServers() unless config.iceServers is set.
 */
export async function startCall(room, options) {
  const { role, config = {} } = options ?? {};
  if (!KEYS[role]) throw new TypeError("sigbase/webrtc: role must be 'caller' or 'callee'");
  const iceServers = config.iceServers ?? (await room.iceServers());
  const call = new Call(room, new RTCPeerConnection({ ...config, iceServers }), options);
  try {
    await call.start();
  } catch (err) {
    call.end('error');
    throw err;
  }
  return call;
}

export class Call {
  // static after construction
  room;
  pc;
  role;
  /** The remote tracks, gathered in one stream. */
  remoteStream = new MediaStream();
  /** Resolves to the data channel once it is open. */
  channel;
  #opts;
  #keys;

  #sid = null; // the session both sides tag their writes with
  #sidKnown;
  #setSid;
  #pending = []; // remote candidates waiting for the remote description
  #unsubscribe = [];
  #openChannel;
  #offerSeen = false; // the caller saw its own offer in the room
  #ended = false;

  constructor(room, pc, options) {
    this.room = room;
    this.pc = pc;
    this.role = options.role;
    this.#opts = options;
    this.#keys = KEYS[options.role];
    this.#sidKnown = new Promise((resolve) => { this.#setSid = resolve; });
    this.channel = new Promise((resolve, reject) => { this.#openChannel = { resolve, reject }; });
    this.channel.catch(() => {}); // ended before opening: only those who await it hear
    pc.addEventListener('track', (ev) => this.#onTrack(ev));
    pc.addEventListener('icecandidate', (ev) => this.#onLocalCandidate(ev.candidate));
    pc.addEventListener('connectionstatechange', () => this.#opts.onState?.(pc.connectionState));
    pc.addEventListener('datachannel', (ev) => this.#adoptChannel(ev.channel));
  }

  /** True once the call has ended, by either side. */
  get ended() { return this.#ended; }

  async start() {
    if (this.role === 'caller') return this.#startCaller();
    this.#watch(this.room.recv('offer', (offer) => this.#guard(this.#onOffer(offer))));
  }

  async #startCaller() {
    const { stream, receive = [], dataChannel = 'sigbase' } = this.#opts;
    this.#addTracks(stream);
    for (const kind of receive) {
      if (!stream?.getTracks().some((t) => t.kind === kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
    }
    if (dataChannel !== false) this.#adoptChannel(this.pc.createDataChannel(dataChannel));
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const sid = randomSid();
    // One revision replaces the offer and clears what an earlier call left.
    await this.room.update({
      offer: { type: offer.type, sdp: offer.sdp, sid },
      answer: null,
      callerCandidates: null,
      calleeCandidates: null,
    });
    this.#sid = sid;
    this.#setSid(sid);
    this.#watch(this.room.recv('answer', (answer) => this.#guard(this.#onAnswer(answer))));
    this.#watch(this.room.recv('offer', (offer) => this.#onOwnOffer(offer)));
    this.#watch(this.room.recvChild(this.#keys.theirs, (c) => this.#onRemoteCandidate(c)));
  }

  async #onOffer(offer) {
    if (this.#ended) return;
    if (this.#sid !== null) {
      if (offer === null) this.end('remote hung up');
      else if (offer.sid !== this.#sid) this.end('offer replaced');
      return;
    }
    if (offer?.type !== 'offer' || typeof offer.sdp !== 'string') return; // wait for one
    this.#sid = offer.sid;
    this.#setSid(offer.sid);
    this.#watch(this.room.recvChild(this.#keys.theirs, (c) => this.#onRemoteCandidate(c)));
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    this.#flushCandidates();
    this.#addTracks(this.#opts.stream); // after the offer, so they take its transceivers
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    await this.room.send('answer', { type: answer.type, sdp: answer.sdp, sid: offer.sid });
  }

  async #onAnswer(answer) {
    if (this.#ended || answer?.sid !== this.#sid) return;
    if (answer.type !== 'answer' || this.pc.signalingState !== 'have-local-offer') return;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    this.#flushCandidates();
  }

  // #onOwnOffer ends the call when the offer is deleted (hang-up, room
  // deleted or expired) or replaced by another caller.
  // It waits to see its own offer first: the local copy may still hold what
  // the room had before the write.
  #onOwnOffer(offer) {
    if (offer !== null && offer.sid === this.#sid) this.#offerSeen = true;
    else if (this.#offerSeen) this.end(offer === null ? 'remote hung up' : 'offer replaced');
  }

  #onLocalCandidate(candidate) {
    if (!candidate || this.#ended) return; // null: gathering is complete
    const { mine } = this.#keys;
    // After the sid is known: for the caller, after the write that clears
    // the candidates of earlier calls.
    this.#sidKnown
      .then((sid) => (this.#ended ? undefined : this.room.push(mine, { ...candidate.toJSON(), sid })))
      .catch((err) => this.#report(err));
  }

  #onRemoteCandidate(c) {
    if (this.#ended) return;
    if (this.pc.remoteDescription) this.#addCandidate(c);
    else this.#pending.push(c);
  }

  #flushCandidates() {
    const pending = this.#pending;
    this.#pending = [];
    for (const c of pending) this.#addCandidate(c);
  }

  #addCandidate(c) {
    if (c?.sid !== this.#sid) return; // from an earlier call
    const { candidate, sdpMid, sdpMLineIndex, usernameFragment } = c;
    this.pc.addIceCandidate({ candidate, sdpMid, sdpMLineIndex, usernameFragment }).catch((err) => this.#report(err));
  }

  #addTracks(stream) {
    for (const track of stream?.getTracks() ?? []) this.pc.addTrack(track, stream);
  }

  #onTrack(ev) {
    this.remoteStream.addTrack(ev.track);
    this.#opts.onTrack?.(ev.track, this.remoteStream);
  }

  #adoptChannel(ch) {
    this.#opts.onDataChannel?.(ch);
    if (ch.readyState === 'open') this.#openChannel.resolve(ch);
    else ch.addEventListener('open', () => this.#openChannel.resolve(ch), { once: true });
  }

  #watch(unsubscribe) {
    this.#unsubscribe.push(unsubscribe);
  }

  // #guard reports a failed signaling step and ends the call: it cannot go on.
  #guard(promise) {
    promise.catch((err) => {
      if (this.#ended) return; // a step cut short by the end of the call
      this.#report(err);
      this.end('error');
    });
  }

  #report(err) {
    if (this.#opts.onError) this.#opts.onError(err);
    else console.warn('sigbase/webrtc:', err);
  }

  /**
   * Ends the call here: stops listening, closes the peer connection. With
   * deleteRoom the room is deleted too, which ends the call for the peer.
   * onEnd hears 'hangup' once that is done.
   */
  async hangup({ deleteRoom = false } = {}) {
    if (this.#ended) return;
    this.#stop('hangup');
    try {
      if (deleteRoom) await this.room.delete();
    } finally {
      this.#opts.onEnd?.('hangup');
    }
  }

  /** Ends the call for reason without writing anything; onEnd hears it once. */
  end(reason) {
    if (this.#ended) return;
    this.#stop(reason);
    this.#opts.onEnd?.(reason);
  }

  #stop(reason) {
    this.#ended = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#unsubscribe = [];
    this.#pending = [];
    this.pc.close();
    this.#openChannel.reject(new Error(`call ended: ${reason}`));
  }
}

function randomSid() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_');
}
