// sigbase.js as shipped, wired to npm eventsource for Node.
import { EventSource } from 'eventsource';
import { connect } from '../../sigbase.js';

/** Every EventSource a test's rooms opened, to check they were closed. */
export const eventSources = [];

/** An EventSource that records itself and the control events it got. */
export class RecordingEventSource extends EventSource {
  constructor(...args) {
    super(...args);
    eventSources.push(this);
    /** [type, data] of each auth_revoked and cancel event. */
    this.controls = [];
    for (const type of ['auth_revoked', 'cancel']) {
      this.addEventListener(type, (ev) => this.controls.push([type, ev.data]));
    }
  }
}

/**
 * Opens a room closed at the end of the test; records its states and, in
 * room.eventSources, the EventSources it opened, oldest first.
 */
export function open(t, url, options = {}) {
  const mine = [];
  class OwnEventSource extends RecordingEventSource {
    constructor(...args) {
      super(...args);
      mine.push(this);
    }
  }
  const room = connect(url, { EventSource: OwnEventSource, ...options });
  room.eventSources = mine;
  room.states = [];
  room.onstate((s) => room.states.push(s));
  t.after(() => room.close());
  return room;
}

/** Records each call of room.recv(key) as its value. */
export function recvLog(room, key) {
  const calls = [];
  hide(calls, 'unsubscribe', room.recv(key, (v) => calls.push(v)));
  return calls;
}

/** Records each call of room.recvChild(key) as [id, value]. */
export function childLog(room, key) {
  const calls = [];
  hide(calls, 'unsubscribe', room.recvChild(key, (v, id) => calls.push([id, v])));
  hide(calls, 'ids', () => calls.map(([id]) => id));
  return calls;
}

// hide adds a method that deepEqual does not compare.
function hide(obj, name, value) {
  Object.defineProperty(obj, name, { value, enumerable: false });
}

/** Writes to a room with plain fetch: no stream of its own. */
export function restWriter(url, room) {
  const call = async (method, key, value) => {
    const res = await fetch(`${url}/rooms/${room}/${key}`, { method, body: JSON.stringify(value) });
    const body = await res.json();
    if (!res.ok) throw new Error(`${method} ${key}: ${res.status} ${body.error}`);
    return body;
  };
  return {
    push: async (key, value) => (await call('POST', key, value)).name,
    send: (key, value) => call('PUT', key, value),
  };
}
