// Types for sigbase.js: one room of a sigbase server, kept as a local copy
// over one EventSource, with REST writes. Wire contract: shared/API.md.

/** Any JSON value. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [member: string]: JSONValue };

/** connecting → open; reconnecting while the stream is down; closed for good. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectOptions {
  /** Room name, /^[A-Za-z0-9_-]{1,128}$/. Omitted: 128 random bits, base64url. */
  room?: string;
  /**
   * Sent as `Authorization: Bearer` on requests and `?auth=` on the stream.
   * A function is asked again before every request and reconnect; with one,
   * an `auth_revoked` event reconnects with a fresh token instead of closing.
   */
  token?: string | (() => string | Promise<string>);
  /** For Node or tests; default globalThis.fetch. Also handed to an EventSource that takes a fetch option. */
  fetch?: typeof fetch;
  /** For Node (npm `eventsource`); default globalThis.EventSource. */
  EventSource?: new (url: string, init?: object) => EventSource;
  /** Reconnect after this many ms without any frame (keep-alives included); 0: never. Default: three keep-alive intervals as the server announces them (45000 until it has). */
  staleAfter?: number;
  /**
   * Join as a member: `members/{id}` holds `{name, joinedAt}` (a server
   * timestamp) while this client is connected, and the server deletes it
   * (onDisconnect) when the client's stream is gone past the server's grace
   * period. id: /^[A-Za-z0-9_-]{1,64}$/.
   */
  member?: { id: string; name?: string };
}

/** A room member's entry, `members/{id}`. */
export interface Member {
  name: string;
  /** Server time in ms since the Unix epoch. */
  joinedAt: number;
}

/** The server's answer to a failed request: its `{"error"}` message and HTTP status. */
export class SigbaseError extends Error {
  readonly name: 'SigbaseError';
  /** HTTP status: 400 bad name or body, 401/403 auth, 412 If-Match, 413 too large, 429 quota, ... */
  readonly status: number;
  /** The parsed response body: `{error}`, or for 412 the current value. */
  readonly body: unknown;
}

export class Room {
  /** The room's name: share it to let a peer join. */
  readonly name: string;
  readonly state: ConnectionState;
  /** Why the room closed on its own (auth revoked, access refused), or null. */
  readonly error: Error | null;
  /** This client's member id (ConnectOptions.member), or null. */
  readonly memberId: string | null;

  /** Calls handler with the members ({} for none) now and on every join or leave; returns the unsubscribe. */
  members(handler: (members: { [id: string]: Member }) => void): () => void;
  /** Deletes this client's member entry at once, then closes the room. */
  leave(): Promise<void>;

  /** PUT: sets key (or "key/child") to value; null deletes. Resolves once durable. */
  send(key: string, value: JSONValue): Promise<void>;
  /** POST: appends value as a new child of key; resolves to its push id. */
  push(key: string, value: JSONValue): Promise<string>;
  /** PATCH of the room: members "key" or "key/child" (null deletes), in one revision. */
  update(members: { [path: string]: JSONValue }): Promise<void>;
  /** GET from the server: key, "key/child", or the whole room without a key; null when absent. */
  get(key?: string): Promise<JSONValue>;
  /** DELETE of key or "key/child". */
  remove(key: string): Promise<void>;
  /** DELETE of the whole room: every watcher sees its keys become null. */
  delete(): Promise<void>;
  /** GET /ice-servers: STUN, and TURN with fresh time-limited credentials, for RTCPeerConnection. */
  iceServers(): Promise<RTCIceServer[]>;

  /**
   * Calls handler with key's current value (null when absent) once the room
   * is loaded, then on every change (null when deleted). Returns unsubscribe.
   */
  recv(key: string, handler: (value: JSONValue) => void): () => void;
  /**
   * Calls handler once per child of key, existing ones first, in push-id
   * order; never twice for one id, across reconnects and snapshots. Returns unsubscribe.
   */
  recvChild(key: string, handler: (value: JSONValue, id: string) => void): () => void;
  /** Calls handler with the current state now and on every change. Returns unsubscribe. */
  onstate(handler: (state: ConnectionState, error: Error | null) => void): () => void;
  /** Closes the stream and drops every subscription: no handler runs after this; requests reject. */
  close(): void;
}

/** Opens a room and starts watching it. */
export function connect(baseURL?: string | URL, options?: ConnectOptions): Room;

/** A room name with 128 random bits (22 base64url characters). */
export function randomRoomName(): string;
