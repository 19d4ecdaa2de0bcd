// Type declarations of the Switchboard SDK (/sdk/switchboard.js). Reference: docs/sdk.md.

/** Error codes: those of the signaling protocol (docs/signaling.md) and the SDK's own. */
export type ErrorCode =
  | 'bad-message'
  | 'too-large'
  | 'rate-limited'
  | 'not-joined'
  | 'already-joined'
  | 'bad-room'
  | 'room-full'
  | 'unknown-peer'
  | 'unauthorized'
  | 'token-expired'
  | 'forbidden'
  | 'bad-resume'
  | 'kicked'
  | 'origin-not-allowed'
  | 'unknown-connection'
  | 'server-shutdown'
  /** The server could not be reached (or did not answer `join`). */
  | 'unreachable'
  /** The session was closed locally while an operation was under way. */
  | 'closed'
  /** A method was called in the wrong state (e.g. `join()` twice). */
  | 'invalid-state'
  /** An invalid constructor option or argument. */
  | 'bad-option'
  /** An offer or answer could not be created or applied (recovered automatically when possible). */
  | 'negotiation-failed'
  /** ICE found no working path to a peer, before and after an ICE restart (`error.peer` names it). */
  | 'peer-unreachable'
  | (string & {});

/** An error with a machine-readable code. */
export class SwitchboardError extends Error {
  constructor(code: ErrorCode, reason?: string, opts?: { fatal?: boolean; cause?: unknown });
  readonly name: 'SwitchboardError';
  /** The protocol or SDK error code. */
  code: ErrorCode;
  /** Human-readable explanation (from the server when it sent one). */
  reason: string;
  /** True when the session is over because of this error (no reconnection follows). */
  fatal: boolean;
  /** The peer the error is about (`peer-unreachable`). */
  peer?: string;
  toJSON(): { code: ErrorCode; reason: string; fatal: boolean };
}

/** Signaling state of a Switchboard instance. */
export type SignalingState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface SwitchboardOptions {
  /** Room to join: 1-64 characters of `A-Za-z0-9_-.`. Created on first join. */
  room: string;
  /** Server base URL (http or https); WebSocket/SSE URLs are derived from it. Default: `location.origin`. */
  url?: string;
  /** Display name shown to the others (1-64 characters; default on the server: "guest"). */
  name?: string;
  /** Room token (JWT) when the server runs with `--room-token-secret`; also sent to `/api/ice-servers`, which then answers only token holders. */
  token?: string;
  /** `'auto'` (default): fetch `GET /api/ice-servers` (STUN + time-limited TURN credentials, refreshed before they expire); or explicit servers. */
  iceServers?: 'auto' | RTCIceServer[];
  /** `'all'` (default) or `'relay'` (TURN only). */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** `'auto'` (default): WebSocket, falling back to EventSource + POST when WebSockets fail; or force one. */
  transport?: 'auto' | 'ws' | 'sse';
  /** Send `leave` when the page is hidden for good (`pagehide`), so the others see you go at once. Default true. */
  leaveOnUnload?: boolean;
  /** `true`: log to `console.debug`; or a logging function. */
  debug?: boolean | ((...args: unknown[]) => void);
}

/** What a peer looks like in the server's member lists. */
export interface PeerInfo {
  id: string;
  name?: string;
  /** The `sub` of the peer's room token, when it had one. */
  identity?: string;
}

/** A remote participant and the RTCPeerConnection to it. */
export class Peer {
  /** Opaque peer id, stable across reconnections. */
  readonly id: string;
  /** Display name. */
  name: string;
  /** Verified identity (the `sub` of its room token), if any. */
  identity?: string;
  /** The connection to this peer. */
  readonly pc: RTCPeerConnection;
  /** Remote streams received from this peer. */
  readonly streams: MediaStream[];
  /** The connection's `connectionState`. */
  state: RTCPeerConnectionState;
  /** Whether this side yields in an offer collision (own peer id > remote peer id). */
  readonly polite: boolean;
  /** Whether this side made the first offer (it joined after the peer). */
  readonly initiator: boolean;
  /** The negotiated data channel (`negotiated: true, id: 0`, label `switchboard`) used by `send`. */
  readonly channel: RTCDataChannel;
  /** True once the connection was closed (the peer left, or we did). */
  readonly closed: boolean;
  /** Restart ICE with this peer (renegotiates). */
  restartIce(why?: string): void;
  toJSON(): { id: string; name: string; identity?: string; state: RTCPeerConnectionState; polite: boolean };
}

/** Payloads of the events. */
export interface SwitchboardEvents {
  /** Signaling state changed. */
  state: SignalingState;
  /**
   * In the room. `peers` are the members already there (no `peer-joined` is emitted for
   * them). Emitted again with `rejoined: true` when the server had forgotten the session
   * (it was away longer than the grace period) and the SDK joined afresh with a new peer id.
   */
  joined: { peerId: string; peers: Peer[]; rejoined: boolean };
  /** Someone joined after us. */
  'peer-joined': Peer;
  /** Someone left: `left` (on purpose), `timeout` (connection lost for good), `kicked`. */
  'peer-left': { peer: Peer; reason: 'left' | 'timeout' | 'kicked' | string };
  /** Remote media arrived. */
  track: { peer: Peer; track: MediaStreamTrack; streams: MediaStream[]; transceiver: RTCRtpTransceiver };
  /** An application message (see `send`). `via` tells whether it came over the data channel or the signaling server. */
  message: { peer: Peer | { id: string; name: string }; data: unknown; via: 'datachannel' | 'signal' };
  /** The RTCPeerConnection's `connectionState` changed. */
  'peer-state': { peer: Peer; state: RTCPeerConnectionState };
  /** The data channel to `peer` opened. */
  'channel-open': { peer: Peer };
  /** Signaling came back after a transport loss; `gap` means messages were lost and every peer connection was renegotiated with an ICE restart. */
  resumed: { gap: boolean };
  /** An error; `fatal` means the session is over. */
  error: SwitchboardError;
}

export class Switchboard {
  constructor(options: SwitchboardOptions);

  /** Remote participants by peer id. */
  readonly peers: Map<string, Peer>;
  /** Own peer id once joined. */
  readonly peerId: string | null;
  /** Grants of this session (`publish`, `subscribe`, `admin`). */
  readonly grants: string[];
  /** Signaling state. */
  readonly state: SignalingState;
  /** Room name. */
  readonly room: string;
  /** Own display name. */
  readonly name: string;
  /** Signaling transport in use: `'ws'` or `'sse'` (null before the first connection). */
  readonly transportKind: 'ws' | 'sse' | null;
  /** The stream holding the tracks being sent (its id is the msid others see). */
  readonly localStream: MediaStream;
  /** ICE servers in use. */
  readonly iceServers: RTCIceServer[];

  on<K extends keyof SwitchboardEvents>(event: K, fn: (arg: SwitchboardEvents[K]) => void): this;
  off<K extends keyof SwitchboardEvents>(event: K, fn?: (arg: SwitchboardEvents[K]) => void): this;
  once<K extends keyof SwitchboardEvents>(event: K, fn: (arg: SwitchboardEvents[K]) => void): this;

  /**
   * Connect and join the room. Resolves after the `joined` event; rejects with a
   * SwitchboardError whose `code` is the server's (`room-full`, `unauthorized`,
   * `token-expired`, `bad-room`, `origin-not-allowed`, ...) or `unreachable`.
   * May be called again after a failure or after `leave()`.
   */
  join(): Promise<{ peerId: string; peers: Peer[] }>;

  /**
   * Send the first audio and first video track of `stream` to every peer, current and
   * future; `null` stops sending. Never rejects.
   */
  publish(stream: MediaStream | null): Promise<void>;

  /**
   * Replace the track sent for `kind` on every peer (screen share, another device, or
   * `null` to stop sending) without renegotiation when possible.
   */
  replaceTrack(kind: 'audio' | 'video', track: MediaStreamTrack | null): Promise<void>;

  /**
   * Send an application message (any JSON value) to one peer or to everyone, over the
   * data channel (or through the signaling server until the channel is open). Returns the
   * number of peers it was sent to. Throws `unknown-peer` for an unknown `peerId`.
   */
  send(data: unknown, peerId?: string): number;

  /** Remove a peer from the room (needs the `admin` grant; refusals arrive as `error` events). */
  kick(peerId: string): void;

  /** Restart ICE with one peer or with all. */
  restartIce(peerId?: string): void;

  /** Leave the room and close every connection (local tracks are not stopped). */
  leave(): Promise<void>;

  toJSON(): { room: string; name: string; peerId: string | null; state: SignalingState; transportKind: 'ws' | 'sse' | null };
}

/** SDK version. */
export const VERSION: string;
/** Signaling protocol version spoken. */
export const PROTOCOL: number;

export default Switchboard;
