// Types for mesh.js: a group call, one RTCPeerConnection per pair of members.
import type { Room } from './sigbase.js';

export interface MeshOptions {
  /** Local tracks to send to every peer. Without one, audio and video are received only. */
  stream?: MediaStream | null;
  /** Members in the call at most (by joinedAt, then id); a later joiner gets "room full". Default 6. */
  maxPeers?: number;
  /** Passed to every RTCPeerConnection; without iceServers they come from room.iceServers(). */
  config?: RTCConfiguration;
  /** How long to wait for this member's own entry in members/ (ms). Default 15000. */
  joinTimeoutMs?: number;
  /** A member is in the call: its peer connection is being set up. */
  onPeerJoined?: (id: string, info: { name: string }) => void;
  /** A member left (its members/ entry is gone): its peer connection is closed. */
  onPeerLeft?: (id: string) => void;
  /** A peer's track arrived; stream gathers all of that peer's tracks. */
  onTrack?: (id: string, track: MediaStreamTrack, stream: MediaStream) => void;
  /** Text from a peer's data channel. */
  onMessage?: (id: string, text: string) => void;
  /** A peer connection's connectionState changed ('failed' restarts ICE). */
  onPeerState?: (id: string, state: RTCPeerConnectionState) => void;
  /** A signaling step failed. Default: console.warn. */
  onError?: (error: unknown) => void;
}

export interface MeshPeer {
  readonly id: string;
  readonly name: string;
  readonly pc: RTCPeerConnection;
  /** Negotiated data channel (id 0), one per pair. */
  readonly channel: RTCDataChannel;
  /** The peer's tracks. */
  readonly stream: MediaStream;
  /** This side's random session of the pair, and the peer's (null until heard). */
  readonly sid: string;
  readonly remoteSid: string | null;
  /** The smaller id of a pair is polite: it yields on an offer collision. */
  readonly polite: boolean;
  readonly state: RTCPeerConnectionState;
  /** Counters, for tests and the curious. */
  readonly stats: {
    offersSent: number; offersReceived: number; collisions: number; iceRestarts: number;
    candidatesSent: number; candidatesAdded: number; candidatesDropped: number;
  };
}

export class MeshCall {
  readonly room: Room;
  /** This member's id. */
  readonly id: string;
  readonly peers: Map<string, MeshPeer>;
  readonly left: boolean;
  /** Sends text to every peer whose data channel is open; returns how many. */
  send(text: string): number;
  /** Closes every peer connection, deletes this member's inbox, leaves the room. */
  leave(): Promise<void>;
}

/**
 * Joins the group call in room, which must be connected with a member
 * (connect(url, {room, member: {id, name}}); id at most 58 characters).
 * Resolves once this member is admitted; rejects with an Error whose message
 * says "room full" when maxPeers members joined first (it leaves the room).
 * Signaling uses the keys `inbox-{id}`.
 */
export function joinRoom(room: Room, options?: MeshOptions): Promise<MeshCall>;

/** The ids in the call: the first maxPeers members by joinedAt, then id. */
export function admitted(members: Record<string, { name: string; joinedAt: number }>, maxPeers?: number): string[];
