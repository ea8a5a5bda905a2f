// The demo page: create or join a room, then a video call and a chat over a
// data channel, signaled through sigbase. Same-origin module, no inline code
// (the page's Content-Security-Policy forbids it).
import { connect, randomRoomName } from './sigbase.js';
import { startCall } from './webrtc.js';
import { joinRoom } from './mesh.js';

const $ = (id) => document.getElementById(id);
const ui = {
  roomForm: $('room-form'), room: $('room'), create: $('create'), join: $('join'), hangup: $('hangup'),
  shareBox: $('share-box'), share: $('share'), copy: $('copy'),
  local: $('local'), remote: $('remote'), unmute: $('unmute'), group: $('group'), videos: $('videos'), tiles: $('tiles'),
  chatLog: $('chat-log'), chatForm: $('chat-form'), chatInput: $('chat-input'), chatSend: $('chat-send'),
  status: $('status'), problem: $('problem'), stateLog: $('state-log'),
};
const ROOM_NAME = /^[A-Za-z0-9_-]{1,128}$/;
// Seconds that ICE gathering, and then the connection once offer and answer
// are both set, may take before the page says what is stuck. #ice-timeout=N
// (seconds) overrides it: the e2e tests use a short one.
const ICE_TIMEOUT_S = 15;

let session = null; // { role, room, stream, call, channel, unwatch } while in a room
/** Milliseconds from page load to channelOpen and firstFrame, for the tests. */
const marks = {};

// For tests and curious developers: the current room and call.
window.sigbaseDemo = {
  get room() { return session?.room; },
  get call() { return session?.call; },
  get mesh() { return session?.mesh; },
  marks,
};

function params() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const get = (key) => hash.get(key) ?? query.get(key);
  const iceTimeout = Number(get('ice-timeout'));
  return {
    room: get('room'),
    relay: get('relay') === '1',
    group: get('group') === '1',
    iceTimeout: iceTimeout > 0 ? iceTimeout : ICE_TIMEOUT_S,
    iceTimeoutHash: hash.get('ice-timeout'),
  };
}

// The page's URL for room name (none: the lobby), keeping the hash options.
function pageURL(name) {
  const { relay, iceTimeoutHash } = params();
  const parts = [];
  if (name) parts.push(`room=${name}`);
  if (relay) parts.push('relay=1');
  if (ui.group.checked) parts.push('group=1');
  if (iceTimeoutHash !== null) parts.push(`ice-timeout=${encodeURIComponent(iceTimeoutHash)}`);
  return parts.length ? `#${parts.join('&')}` : location.pathname;
}

function log(text, kind = '') {
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = `${(performance.now() / 1000).toFixed(2)} s`;
  li.append(time, text);
  if (kind) li.className = kind;
  ui.stateLog.append(li);
  ui.stateLog.scrollTop = ui.stateLog.scrollHeight;
}

function mark(key, label) {
  if (marks[key] !== undefined) return;
  marks[key] = performance.now();
  performance.mark(`sigbase:${key}`);
  log(`${label} ${Math.round(marks[key])} ms after page load`);
}

function chat(who, text) {
  const li = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'who';
  name.textContent = who;
  li.append(name, text);
  if (who === 'you') li.className = 'me';
  ui.chatLog.append(li);
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

function setStatus(text, kind = '') {
  ui.status.textContent = text;
  ui.status.className = `badge ${kind}`;
}

// A problem the user should read, in words; the state log has the details.
function showProblem(text) {
  ui.problem.textContent = text;
  ui.problem.hidden = false;
  log(text, 'error');
}

function clearProblem() {
  ui.problem.textContent = '';
  ui.problem.hidden = true;
}

function setInRoom(inRoom) {
  ui.create.disabled = inRoom;
  ui.join.disabled = inRoom;
  ui.room.disabled = inRoom;
  ui.group.disabled = inRoom;
  ui.hangup.disabled = !inRoom;
}

function setChat(open) {
  ui.chatInput.disabled = !open;
  ui.chatSend.disabled = !open;
  ui.chatInput.placeholder = open ? 'say something' : 'the data channel opens when the peer joins';
}

function showShare(name) {
  const { relay } = params();
  ui.share.href = `${location.origin}/#room=${name}${relay ? '&relay=1' : ''}${ui.group.checked ? '&group=1' : ''}`;
  ui.share.textContent = ui.share.href;
  ui.shareBox.hidden = false;
}

// The link invites into the room this tab is in: once it has left (or the
// room is deleted) it must not be offered any more.
function hideShare() {
  ui.shareBox.hidden = true;
  ui.share.removeAttribute('href');
  ui.share.textContent = '';
}

async function localMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    log('no camera access here: it needs https or localhost', 'error');
    return null;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: true });
    ui.local.srcObject = stream;
    return stream;
  } catch (err) {
    log(`no camera or microphone (${err.name}): receiving only`, 'error');
    return null;
  }
}

async function start(role, name) {
  if (session) return;
  if (ui.group.checked) return startGroup(name);
  setInRoom(true);
  ui.room.value = name;
  const { relay, iceTimeout } = params();
  history.replaceState(null, '', pageURL(name));
  sessionStorage.setItem(`sigbase-role:${name}`, role);
  clearProblem();
  showShare(name);
  const current = { role, room: null, stream: null, call: null, channel: null, unwatch: null };
  session = current;
  current.stream = await localMedia();
  current.room = connect(location.origin, { room: name });
  current.room.onstate((state, err) => log(`signaling ${state}${err ? `: ${err.message}` : ''}`, err ? 'error' : ''));
  log(`${role === 'caller' ? 'created' : 'joining'} room ${name}${relay ? ' (relay only)' : ''}`);
  let hasTurn;
  try {
    const iceServers = await current.room.iceServers();
    if (session !== current) return; // hung up meanwhile
    hasTurn = iceServers.some((s) => [s.urls].flat().some((u) => /^turns?:/i.test(u)));
    if (relay && !hasTurn) {
      // Relay only without a TURN server gathers no candidate at all: the
      // call could never connect, so say why instead of waiting forever.
      teardown(current);
      setStatus('TURN not configured', 'failed');
      showProblem('Relay only (relay=1) needs TURN configured on the server, and TURN is not configured on this server '
        + '(its /ice-servers lists no turn: URL). Start sigbase with --turn and --turn-secret, or open the page without relay=1.');
      return;
    }
    current.call = await startCall(current.room, {
      role,
      stream: current.stream,
      receive: ['audio', 'video'],
      config: { iceServers, ...(relay ? { iceTransportPolicy: 'relay' } : {}) },
      onTrack: (track, stream) => showRemote(stream),
      onDataChannel: (channel) => wireChannel(current, channel),
      onState: (state) => setStatus(state, { connected: 'connected', failed: 'failed' }[state]),
      onEnd: (reason) => onEnd(current, reason),
      onError: (err) => log(`error: ${err.message}`, 'error'),
    });
  } catch (err) {
    log(`could not start the call: ${err.message}`, 'error');
    return teardown(current);
  }
  if (session !== current) return;
  watchPeer(current.call.pc);
  current.unwatch = watchICE(current, { relay, hasTurn, timeoutS: iceTimeout });
  log(role === 'caller' ? 'offer written: waiting for the peer' : 'waiting for the offer');
}

function watchPeer(pc) {
  pc.addEventListener('signalingstatechange', () => log(`signaling state ${pc.signalingState}`));
  pc.addEventListener('icegatheringstatechange', () => log(`ICE gathering ${pc.iceGatheringState}`));
  pc.addEventListener('iceconnectionstatechange', () => log(`ICE ${pc.iceConnectionState}`));
  pc.addEventListener('connectionstatechange', () => log(`peer connection ${pc.connectionState}`, pc.connectionState === 'failed' ? 'error' : ''));
}

// watchICE puts into words what keeps the call from connecting: ICE
// gathering that does not complete, or a connection that is not up within
// timeoutS seconds of offer and answer being set, or one that failed.
// Without it the badge just stayed at "idle". Returns its cleanup.
function watchICE(current, { relay, hasTurn, timeoutS }) {
  const { pc } = current.call;
  const timers = [];
  let gathering = null;
  let connecting = null;
  const later = (fn) => { const id = setTimeout(fn, timeoutS * 1000); timers.push(id); return id; };
  const live = () => session === current && !current.call.ended && pc.connectionState !== 'connected';
  const report = (failed) => {
    if (!live() && !failed) return;
    setStatus(failed ? 'failed' : 'not connected', 'failed');
    showProblem(explainICE(pc, { relay, hasTurn, timeoutS, failed }));
  };
  const check = () => {
    if (gathering === null && pc.iceGatheringState !== 'new') {
      gathering = later(() => {
        if (live() && pc.iceGatheringState !== 'complete') {
          showProblem(`Looking for network addresses (ICE candidates) did not finish in ${timeoutS} s: `
            + `a STUN or TURN server may be unreachable. (${iceStates(pc)})`);
        }
      });
    }
    // Offer and answer both set: from here on only ICE can be in the way.
    if (connecting === null && pc.signalingState === 'stable' && pc.remoteDescription) connecting = later(() => report(false));
  };
  const onConnection = () => {
    if (pc.connectionState === 'connected') clearProblem();
    else if (pc.connectionState === 'failed' && session === current) report(true);
  };
  pc.addEventListener('icegatheringstatechange', check);
  pc.addEventListener('signalingstatechange', check);
  pc.addEventListener('connectionstatechange', onConnection);
  check(); // the caller's gathering began inside startCall
  return () => {
    for (const id of timers) clearTimeout(id);
    pc.removeEventListener('icegatheringstatechange', check);
    pc.removeEventListener('signalingstatechange', check);
    pc.removeEventListener('connectionstatechange', onConnection);
  };
}

function iceStates(pc) {
  return `iceGatheringState ${pc.iceGatheringState}, iceConnectionState ${pc.iceConnectionState}, connectionState ${pc.connectionState}`;
}

// The candidates a description holds: the browser adds gathered (local) and
// added (remote) candidates to them.
function candidateTypes(desc) {
  return [...(desc?.sdp ?? '').matchAll(/^a=candidate:.* typ (\w+)/gm)].map((m) => m[1]);
}

function explainICE(pc, { relay, hasTurn, timeoutS, failed }) {
  const local = candidateTypes(pc.localDescription);
  const remote = candidateTypes(pc.remoteDescription);
  let why;
  if (local.length === 0 && relay) {
    why = 'no relay candidates: the TURN server gave this browser no relay address (it may be unreachable, or it refused the credentials this server minted)';
  } else if (local.length === 0) {
    why = 'this browser found no network address to offer the peer';
  } else if (remote.length === 0) {
    why = 'no network addresses (ICE candidates) arrived from the peer';
  } else if (!hasTurn) {
    why = 'the two browsers cannot reach each other directly, and TURN is not configured on this server to relay between them';
  } else {
    why = 'the two browsers cannot reach each other, not even through the TURN relay';
  }
  return `${failed ? 'Connection failed' : `Not connected after ${timeoutS} s`}: ${why}. (${iceStates(pc)})`;
}

function showRemote(stream) {
  if (ui.remote.srcObject === stream) return;
  ui.remote.srcObject = stream;
  ui.remote.play().catch(() => {
    // Autoplay with sound needs a click on this page: play muted meanwhile.
    ui.remote.muted = true;
    ui.unmute.hidden = false;
    ui.remote.play().catch(() => {});
  });
  if ('requestVideoFrameCallback' in ui.remote) {
    ui.remote.requestVideoFrameCallback(() => mark('firstFrame', 'first remote video frame'));
  } else {
    ui.remote.addEventListener('loadeddata', () => mark('firstFrame', 'first remote video frame'), { once: true });
  }
}

function wireChannel(current, channel) {
  current.channel = channel;
  channel.addEventListener('open', () => {
    mark('channelOpen', 'data channel open');
    setChat(true);
  });
  channel.addEventListener('message', (ev) => chat('peer', String(ev.data)));
  channel.addEventListener('close', () => {
    setChat(false);
    if (session === current) log('data channel closed');
  });
}

function onEnd(current, reason) {
  if (session !== current) return;
  log(`call ended: ${reason}`, reason === 'hangup' ? '' : 'error');
  teardown(current);
  if (reason === 'remote hung up') {
    // The room is gone (deleted or expired): a reload must not rejoin it.
    sessionStorage.removeItem(`sigbase-role:${current.room.name}`);
    history.replaceState(null, '', pageURL(null));
  }
  if (reason === 'offer replaced' && current.role === 'callee') {
    log('the caller restarted: joining again');
    start('callee', current.room.name);
  }
}

// ---- group call (#group=1): mesh.js, a tile per peer ----

const TILE_STATE = { new: 'connecting', connecting: 'connecting', connected: 'connected', disconnected: 'reconnecting', failed: 'reconnecting' };

async function startGroup(name) {
  setInRoom(true);
  ui.room.value = name;
  history.replaceState(null, '', pageURL(name));
  clearProblem();
  showShare(name);
  ui.videos.classList.add('group');
  ui.tiles.hidden = false;
  const current = { role: 'group', room: null, stream: null, call: null, mesh: null, channel: null, unwatch: null, names: new Map() };
  session = current;
  current.stream = await localMedia();
  if (session !== current) return;
  const id = randomRoomName().slice(0, 12).replace(/^[-_]/, 'm');
  const displayName = `guest-${id.slice(0, 4)}`;
  current.room = connect(location.origin, { room: name, member: { id, name: displayName } });
  current.room.onstate((state, err) => log(`signaling ${state}${err ? `: ${err.message}` : ''}`, err ? 'error' : ''));
  log(`joining group room ${name} as ${displayName}`);
  const live = () => session === current;
  try {
    current.mesh = await joinRoom(current.room, {
      stream: current.stream,
      onPeerJoined: (peer, { name: who }) => { if (live()) { current.names.set(peer, who); addTile(peer, who); log(`${who} joined`); } },
      onPeerLeft: (peer) => { if (live()) { removeTile(peer); log(`${current.names.get(peer) ?? peer} left`); } },
      onTrack: (peer, track, stream) => { if (live()) showTile(peer, stream); },
      onMessage: (peer, text) => { if (live()) chat(current.names.get(peer) ?? peer, text); },
      onPeerState: (peer, state) => {
        if (!live()) return;
        setTileState(peer, state);
        log(`${current.names.get(peer) ?? peer}: ${state}`, state === 'failed' ? 'error' : '');
        if (state === 'connected') mark('channelOpen', 'first peer connected');
      },
      onError: (err) => log(`error: ${err.message}`, 'error'),
    });
  } catch (err) {
    if (!live()) return;
    teardown(current);
    setStatus(/room full/.test(err.message) ? 'room full' : 'failed', 'failed');
    showProblem(/room full/.test(err.message) ? 'This group call is full: 6 people are in it already.' : `Could not join: ${err.message}`);
    return;
  }
  if (!live()) return current.mesh.leave();
  setStatus('in the group call', 'connected');
  setChat(true);
  ui.chatInput.placeholder = 'say something to everyone';
}

function tileOf(peer) {
  return [...ui.tiles.children].find((f) => f.dataset.peer === peer);
}

function addTile(peer, who) {
  if (tileOf(peer)) return;
  const figure = document.createElement('figure');
  figure.dataset.peer = peer;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // autoplay needs it; a click on the tile turns the sound on (and off)
  figure.title = 'click for sound';
  figure.addEventListener('click', () => { video.muted = !video.muted; });
  const caption = document.createElement('figcaption');
  const state = document.createElement('span');
  state.className = 'tile-state';
  state.textContent = 'connecting';
  caption.append(who, state);
  figure.append(video, caption);
  ui.tiles.append(figure);
}

function showTile(peer, stream) {
  const video = tileOf(peer)?.querySelector('video');
  if (!video || video.srcObject === stream) return;
  video.srcObject = stream;
  video.play().catch(() => {});
  if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(() => mark('firstFrame', 'first remote video frame'));
}

function setTileState(peer, state) {
  const badge = tileOf(peer)?.querySelector('.tile-state');
  if (!badge) return;
  badge.textContent = TILE_STATE[state] ?? state;
  badge.className = `tile-state ${TILE_STATE[state] ?? ''}`;
}

function removeTile(peer) {
  tileOf(peer)?.remove();
}

function teardown(current) {
  current.unwatch?.();
  current.call?.end('hangup');
  if (current.mesh) current.mesh.leave();
  else current.room?.close();
  for (const track of current.stream?.getTracks() ?? []) track.stop();
  if (session !== current) return;
  session = null;
  hideShare();
  clearProblem();
  ui.local.srcObject = null;
  ui.remote.srcObject = null;
  ui.tiles.replaceChildren();
  ui.tiles.hidden = true;
  ui.videos.classList.remove('group');
  ui.unmute.hidden = true;
  setChat(false);
  setInRoom(false);
  setStatus('idle');
}

async function hangup() {
  const current = session;
  if (!current) return;
  ui.hangup.disabled = true;
  try {
    if (current.mesh) await current.mesh.leave(); // the others' calls go on
    else if (current.call) await current.call.hangup({ deleteRoom: true });
    else await current.room?.delete();
    log(current.mesh ? 'left the group call' : 'hung up: room deleted');
  } catch (err) {
    log(`hang-up: ${err.message}`, 'error');
  }
  sessionStorage.removeItem(`sigbase-role:${current.room?.name}`);
  teardown(current);
  history.replaceState(null, '', pageURL(null));
}

ui.create.addEventListener('click', () => start('caller', randomRoomName()));
ui.roomForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = ui.room.value.trim();
  if (!ROOM_NAME.test(name)) return ui.room.reportValidity();
  start('callee', name);
});
ui.hangup.addEventListener('click', hangup);
ui.copy.addEventListener('click', () => {
  navigator.clipboard?.writeText(ui.share.href).then(() => log('link copied'), () => log('copy failed: select the link instead'));
});
ui.unmute.addEventListener('click', () => {
  ui.remote.muted = false;
  ui.unmute.hidden = true;
});
ui.chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text) return;
  if (session?.mesh) {
    if (session.mesh.send(text) === 0) log('nobody connected to hear that yet');
  } else if (session?.channel?.readyState === 'open') {
    session.channel.send(text);
  } else {
    return;
  }
  chat('you', text);
  ui.chatInput.value = '';
});
window.addEventListener('pagehide', () => {
  // Leave the room as it is, so a reload can take the call up again.
  session?.call?.end('page closed');
  session?.mesh?.leave();
  session?.room?.close();
});

// A link with #room=NAME joins at once; a reload keeps this tab's role.
function joinFromURL() {
  const { room, group } = params();
  if (group) ui.group.checked = true;
  if (session || !room || !ROOM_NAME.test(room)) return;
  start(sessionStorage.getItem(`sigbase-role:${room}`) ?? 'callee', room);
}
window.addEventListener('hashchange', joinFromURL);
log('ready');
joinFromURL();
