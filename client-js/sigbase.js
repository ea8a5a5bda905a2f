// sigbase client: one room of a sigbase server, as a local copy kept up to
// date over one EventSource, plus REST writes. Dependency-free, shipped as
// written. Wire contract: shared/API.md.

const ROOM_NAME = /^[A-Za-z0-9_-]{1,128}$/;
const MAX_BACKOFF_MS = 30_000;
// Until the server names its keep-alive interval (the keep-alive that opens
// every stream), a stream silent this long is taken for dead: three missed
// keep-alives at the server's default 15 s. After that, three of its own.
const DEFAULT_STALE_MS = 45_000;
const MIN_STALE_MS = 3_000;
const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** An HTTP error answered by the server: its {"error": "..."} message and status. */
export class SigbaseError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = 'SigbaseError';
    this.status = status;
    this.body = body;
  }
}

/** A room name with 128 random bits, base64url (22 characters). */
export function randomRoomName() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Opens a room: starts watching it at once and returns its handle. */
export function connect(baseURL, options = {}) {
  return new Room(baseURL, options);
}

export class Room {
  // static after construction
  #base;
  #name;
  #fetch;
  #fetchOption;
  #EventSource;
  #token;
  #staleAfter;

  // the local copy: the room's keys, and the revision it reflects
  #data = {};
  #synced = false;
  #lastId = null; // decimal string: the id of the last applied event

  // the stream
  #es = null;
  #fresh = false; // no change yet on the current connection
  #attempt = 0;
  #retryTimer = null;
  #staleTimer = null;
  #staleFixed = false; // staleAfter was given: the server's interval does not change it
  #member = null; // { id, name }: this client's entry in members/, kept by the server's onDisconnect
  #joining = null; // the PUT of our member entry, while it is in flight
  #leaving = false;
  #closed = false;
  #state = 'connecting';
  #error = null;

  #subs = new Set();
  #stateHandlers = new Set();

  constructor(baseURL, options) {
    const { room, token, fetch, EventSource, staleAfter, member } = options;
    this.#base = String(baseURL ?? globalThis.location?.origin ?? '').replace(/\/+$/, '');
    if (!/^https?:\/\//.test(this.#base)) throw new TypeError(`sigbase: base URL must be http(s): ${baseURL}`);
    this.#name = room ?? randomRoomName();
    if (!ROOM_NAME.test(this.#name)) throw new TypeError(`sigbase: room name must match ${ROOM_NAME.source}`);
    this.#fetchOption = fetch;
    this.#fetch = fetch ?? globalThis.fetch?.bind(globalThis);
    this.#EventSource = EventSource ?? globalThis.EventSource;
    if (!this.#fetch || !this.#EventSource) throw new TypeError('sigbase: needs fetch and EventSource (pass them in options)');
    this.#token = token;
    this.#staleFixed = staleAfter !== undefined;
    this.#staleAfter = staleAfter ?? DEFAULT_STALE_MS;
    if (member !== undefined) {
      if (!SESSION_ID.test(member?.id ?? '')) throw new TypeError(`sigbase: member.id must match ${SESSION_ID.source}`);
      this.#member = { id: member.id, name: String(member.name ?? member.id) };
    }
    this.#open();
  }

  /** The room's name: share it to let a peer join. */
  get name() { return this.#name; }

  /** This client's member id, or null when it joined without one. */
  get memberId() { return this.#member?.id ?? null; }

  /**
   * Calls handler with the room's members ({id: {name, joinedAt}}, {} for
   * none) now and whenever one joins or leaves. Returns the unsubscribe.
   */
  members(handler) {
    return this.recv('members', (v) => handler(isObject(v) ? v : {}));
  }

  /** Leaves at once: deletes this member's entry, then closes the room. */
  async leave() {
    this.#leaving = true;
    // A join still in flight could land after the DELETE and bring the
    // entry back until the grace period ran out.
    await this.#joining;
    try {
      if (this.#member) await this.#request('DELETE', `/rooms/${this.#name}/members/${this.#member.id}`);
    } finally {
      this.close();
    }
  }

  /** connecting, open, reconnecting or closed. */
  get state() { return this.#state; }

  /** Why the room closed on its own (auth revoked, access refused), or null. */
  get error() { return this.#error; }

  // ---- REST ----

  /** Sets key (or "key/child") to value; null deletes. Resolves once durable. */
  async send(key, value) {
    if (value === undefined) throw new TypeError('sigbase: send needs a JSON value');
    await this.#request('PUT', locationOf(this.#name, key), value);
  }

  /** Appends value as a new child of key; resolves to its push id. */
  async push(key, value) {
    if (value === undefined) throw new TypeError('sigbase: push needs a JSON value');
    const { name } = await this.#request('POST', locationOf(this.#name, key), value);
    return name;
  }

  /** Sets several members ("key" or "key/child"; null deletes) in one revision. */
  async update(members) {
    await this.#request('PATCH', `/rooms/${this.#name}`, members);
  }

  /** Reads key (or "key/child") from the server; the whole room without a key. */
  get(key) {
    const at = key === undefined ? `/rooms/${this.#name}` : locationOf(this.#name, key);
    return this.#request('GET', at);
  }

  /** Deletes key (or "key/child"). */
  async remove(key) {
    await this.#request('DELETE', locationOf(this.#name, key));
  }

  /** Deletes the whole room; watchers see every key become null. */
  async delete() {
    await this.#request('DELETE', `/rooms/${this.#name}`);
  }

  /** The server's RTCIceServer list (STUN, and TURN with fresh credentials). */
  async iceServers() {
    const { iceServers } = await this.#request('GET', '/ice-servers');
    return iceServers;
  }

  async #request(method, path, body) {
    if (this.#closed) throw new Error('sigbase: room is closed');
    const headers = {};
    const token = await this.#currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await this.#fetch(this.#base + path, init);
    const text = await res.text();
    const parsed = parseJSON(text);
    if (!res.ok) {
      const message = parsed?.error ?? `${method} ${path}: HTTP ${res.status}`;
      throw new SigbaseError(String(message), res.status, parsed);
    }
    return parsed;
  }

  async #currentToken() {
    return typeof this.#token === 'function' ? await this.#token() : this.#token;
  }

  // ---- subscriptions ----

  /**
   * Calls handler(value) with key's current value (null when absent) once the
   * room is loaded, then on every change. Returns the unsubscribe function.
   */
  recv(key, handler) {
    return this.#subscribe({ kind: 'value', key, handler, delivered: false, last: null });
  }

  /**
   * Calls handler(value, id) once per child of key, existing ones first, in
   * push-id order, never twice for an id: not after a reconnect, not after a
   * snapshot. Returns the unsubscribe function.
   */
  recvChild(key, handler) {
    return this.#subscribe({ kind: 'child', key, handler, seen: new Set() });
  }

  /** Calls handler(state, error) now and on every connection state change. */
  onstate(handler) {
    this.#stateHandlers.add(handler);
    invoke(handler, this.#state, this.#error);
    return () => this.#stateHandlers.delete(handler);
  }

  #subscribe(sub) {
    if (typeof sub.key !== 'string' || !sub.key || sub.key.includes('/')) {
      throw new TypeError('sigbase: recv and recvChild take a key name');
    }
    if (typeof sub.handler !== 'function') throw new TypeError('sigbase: handler must be a function');
    if (this.#closed) return () => {};
    sub.active = true;
    this.#subs.add(sub);
    queueMicrotask(() => this.#deliver(sub));
    return () => {
      sub.active = false;
      this.#subs.delete(sub);
    };
  }

  #notify(keys) {
    for (const sub of [...this.#subs]) {
      if (keys === null || keys.has(sub.key)) this.#deliver(sub);
    }
  }

  #deliver(sub) {
    if (!this.#synced || !sub.active) return;
    const value = this.#data[sub.key] ?? null;
    if (sub.kind === 'value') deliverValue(sub, value);
    else deliverChildren(sub, value);
  }

  // ---- the stream ----

  async #open() {
    let url;
    try {
      url = await this.#streamURL();
    } catch (err) {
      return this.#fail(err);
    }
    if (this.#closed || this.#es) return;
    const es = this.#fetchOption ? new this.#EventSource(url, { fetch: this.#fetchOption }) : new this.#EventSource(url);
    this.#es = es;
    this.#fresh = false;
    const mine = (fn) => (ev) => { if (es === this.#es) fn(ev); };
    es.addEventListener('open', mine(() => this.#onOpen()));
    es.addEventListener('put', mine((ev) => this.#onChange('put', ev)));
    es.addEventListener('patch', mine((ev) => this.#onChange('patch', ev)));
    es.addEventListener('keep-alive', mine((ev) => this.#onKeepAlive(ev)));
    es.addEventListener('cancel', mine(() => this.#reconnect(Math.random() * 1000)));
    es.addEventListener('auth_revoked', mine((ev) => this.#onAuthRevoked(ev)));
    es.addEventListener('error', mine(() => this.#onError(es)));
  }

  async #streamURL() {
    const params = new URLSearchParams();
    const token = await this.#currentToken();
    if (token) params.set('auth', token);
    if (this.#lastId !== null) params.set('last_event_id', this.#lastId);
    if (this.#member) {
      // The server deletes our entry once this stream is gone for longer
      // than its grace period; a reconnect in time keeps it.
      params.set('session', this.#member.id);
      params.set('ondisconnect', JSON.stringify({ op: 'delete', path: `members/${this.#member.id}` }));
    }
    const query = params.toString();
    return `${this.#base}/rooms/${this.#name}${query ? `?${query}` : ''}`;
  }

  #onOpen() {
    this.#fresh = true;
    this.#attempt = 0;
    this.#setState('open');
    this.#armWatchdog();
  }

  #onChange(type, ev) {
    this.#armWatchdog();
    const first = this.#fresh;
    this.#fresh = false;
    const msg = parseJSON(ev.data);
    if (!msg || typeof msg.path !== 'string') return;
    // A put of "/" first on a connection is a snapshot: it is the truth even
    // when its id is not above ours (a server that lost its data restarts its
    // revisions). Any other event at or below our revision was applied.
    const snapshot = first && type === 'put' && msg.path === '/';
    const id = /^\d+$/.test(ev.lastEventId) ? ev.lastEventId : null;
    if (!snapshot && id !== null && this.#lastId !== null && BigInt(id) <= BigInt(this.#lastId)) return;
    const touched = type === 'put' ? this.#applyPut(msg.path, msg.data) : this.#applyPatch(msg.path, msg.data);
    if (id !== null) this.#lastId = id;
    if (touched === null) this.#synced = true;
    this.#notify(touched);
    if (touched === null || touched.has('members')) this.#ensureMember();
  }

  // #ensureMember writes our entry when the room lacks it: on joining, and
  // after an outage long enough for the server to have deleted it.
  #ensureMember() {
    if (!this.#member || this.#joining || this.#leaving || this.#closed || this.#data.members?.[this.#member.id] !== undefined) return;
    const entry = { name: this.#member.name, joinedAt: { '.sv': 'timestamp' } };
    this.#joining = this.#request('PUT', `/rooms/${this.#name}/members/${this.#member.id}`, entry)
      .catch(() => {}) // the next snapshot tries again
      .finally(() => { this.#joining = null; });
  }

  // #applyPut sets the value at a path relative to the room ("/", "/key",
  // "/key/child") and returns the keys it touched, null for all.
  #applyPut(path, value) {
    const [key, child] = segments(path);
    if (key === undefined) {
      this.#data = isObject(value) ? { ...value } : {};
      return null;
    }
    this.#set(key, child, value);
    return new Set([key]);
  }

  // #applyPatch sets each member, named relative to path, in one revision.
  #applyPatch(path, members) {
    const base = segments(path);
    const touched = new Set();
    for (const [name, value] of Object.entries(members ?? {})) {
      const [key, child] = [...base, ...name.split('/')];
      this.#set(key, child, value);
      touched.add(key);
    }
    return touched;
  }

  // #set replaces values rather than changing them in place: subscribers
  // keep the last value they saw to compare with.
  #set(key, child, value) {
    const next = child === undefined ? value : withChild(this.#data[key], child, value);
    if (next === null || next === undefined || (isObject(next) && Object.keys(next).length === 0)) {
      delete this.#data[key];
    } else {
      this.#data[key] = next;
    }
  }

  #onError(es) {
    if (es.readyState === 2) {
      // The EventSource gave up (an HTTP error, a bad response): ours to retry.
      this.#es = null;
      this.#setState('reconnecting');
      this.#probeThenRetry();
      return;
    }
    this.#setState('reconnecting'); // the EventSource retries with Last-Event-ID
  }

  // #probeThenRetry asks the server why the stream failed: a 4xx that
  // retrying cannot fix (bad token, no access) closes the room; anything
  // else is retried with backoff.
  async #probeThenRetry() {
    try {
      await this.#request('GET', `/rooms/${this.#name}`);
    } catch (err) {
      if (err instanceof SigbaseError && [400, 401, 403, 404].includes(err.status)) return this.#fail(err);
    }
    this.#reconnect(this.#backoff());
  }

  #backoff() {
    const ms = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.#attempt++);
    return ms / 2 + Math.random() * (ms / 2);
  }

  // #reconnect drops the current stream and opens a new one after delay
  // milliseconds, resuming after the last applied revision.
  #reconnect(delay) {
    if (this.#closed) return;
    this.#es?.close();
    this.#es = null;
    clearTimeout(this.#staleTimer);
    clearTimeout(this.#retryTimer);
    this.#setState('reconnecting');
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  #onAuthRevoked(ev) {
    const reason = parseJSON(ev.data) ?? 'auth revoked';
    if (typeof this.#token === 'function') return this.#reconnect(0); // ask for a fresh token
    this.#fail(new SigbaseError(String(reason), 401, { error: reason }));
  }

  // #onKeepAlive learns the server's keep-alive interval from the
  // keep-alive that opens a stream ({"interval": ms}; later ones are null),
  // so a server run with a long --keepalive is not taken for dead.
  #onKeepAlive(ev) {
    const interval = parseJSON(ev.data)?.interval;
    if (!this.#staleFixed && Number.isFinite(interval) && interval > 0) {
      this.#staleAfter = Math.max(MIN_STALE_MS, 3 * interval);
    }
    this.#armWatchdog();
  }

  // #armWatchdog reconnects when the stream has been silent for longer than
  // keep-alives allow: a connection that died without a word.
  #armWatchdog() {
    clearTimeout(this.#staleTimer);
    if (this.#staleAfter > 0) this.#staleTimer = setTimeout(() => this.#reconnect(0), this.#staleAfter);
  }

  #fail(err) {
    this.#error = err;
    this.close();
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    for (const handler of [...this.#stateHandlers]) invoke(handler, state, this.#error);
  }

  /** Stops the stream and every subscription: no handler is called after this. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#es?.close();
    this.#es = null;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#staleTimer);
    for (const sub of this.#subs) sub.active = false;
    this.#subs.clear();
    this.#setState('closed');
    this.#stateHandlers.clear();
  }
}

function deliverValue(sub, value) {
  if (sub.delivered && deepEqual(sub.last, value)) return;
  sub.delivered = true;
  sub.last = value;
  invoke(sub.handler, structuredClone(value));
}

function deliverChildren(sub, value) {
  if (!isObject(value)) return;
  for (const id of Object.keys(value).sort()) {
    if (!sub.active) return;
    if (sub.seen.has(id)) continue;
    sub.seen.add(id);
    invoke(sub.handler, structuredClone(value[id]), id);
  }
}

// locationOf names key, or "key/child", inside room, each segment escaped.
function locationOf(room, key) {
  if (typeof key !== 'string' || key === '') throw new TypeError('sigbase: key must be a non-empty string');
  return `/rooms/${room}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

function segments(path) {
  return path.split('/').filter(Boolean);
}

function withChild(parent, child, value) {
  const next = isObject(parent) ? { ...parent } : {};
  if (value === null) delete next[child];
  else next[child] = value;
  return next;
}

function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// invoke calls an application handler; its exception is reported, not
// allowed to break the stream that called it.
function invoke(handler, ...args) {
  try {
    handler(...args);
  } catch (err) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
    else console.error('sigbase: handler threw', err);
  }
}
