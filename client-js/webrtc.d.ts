// Types for webrtc.js: an RTCPeerConnection signaled through a sigbase room.
import type { Room } from './sigbase.js';

export type Role = 'caller' | 'callee';

/** Why a call ended. */
export type EndReason = 'hangup' | 'remote hung up' | 'offer replaced' | 'error' | (string & {});

export interface CallOptions {
  role: Role;
  /** Local tracks to send (added with addTrack). */
  stream?: MediaStream | null;
  /** Caller only: kinds to receive even without a local track of that kind (recvonly transceivers). */
  receive?: ('audio' | 'video')[];
  /** Caller only: label of the data channel to create, or false for none. Default 'sigbase'. */
  dataChannel?: string | false;
  /**
   * Passed to RTCPeerConnection (e.g. iceTransportPolicy: 'relay').
   * Without iceServers, they come from room.iceServers().
   */
  config?: RTCConfiguration;
  /** A remote track arrived; stream gathers all of them. */
  onTrack?: (track: MediaStreamTrack, stream: MediaStream) => void;
  /** The data channel exists (created here, or announced by the peer); it may not be open yet. */
  onDataChannel?: (channel: RTCDataChannel) => void;
  /** The peer connection's connectionState changed. */
  onState?: (state: RTCPeerConnectionState) => void;
  /** The call ended, here or on the other side; heard once. */
  onEnd?: (reason: EndReason) => void;
  /** A signaling step or a candidate failed. Default: console.warn. */
  onError?: (error: unknown) => void;
}

export class Call {
  readonly room: Room;
  readonly pc: RTCPeerConnection;
  readonly role: Role;
  /** The remote tracks, in one stream. */
  readonly remoteStream: MediaStream;
  /** Resolves to the data channel once open; rejects if the call ends first. */
  readonly channel: Promise<RTCDataChannel>;
  readonly ended: boolean;
  /** Ends the call here; with deleteRoom, deletes the room, which ends it for the peer. */
  hangup(options?: { deleteRoom?: boolean }): Promise<void>;
  /** Ends the call without writing anything. */
  end(reason: EndReason): void;
}

/**
 * Wires an RTCPeerConnection to room: the caller writes `offer` and pushes
 * `callerCandidates`; the callee answers in `answer` and pushes
 * `calleeCandidates`. Resolves once wired (the caller's offer written).
 */
export function startCall(room: Room, options: CallOptions): Promise<Call>;
