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
  /** A cluster node could not reach the cluster's store (Redis) for this room; the SDK tries another node, then again later. */
  | 'unavailable'
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
  /**
   * Instead of `url`: the base URLs of a cluster's nodes (docs/cluster.md). The SDK joins on the first that
   * answers; after a transport loss it resumes on the node it was on, then on the others in turn.
   */
  urls?: string[];
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
  /** A new room's topology: `'auto'` (default: mesh, SFU from the server's threshold on), `'sfu'` or `'mesh'`. Only the room's creator decides. */
  topology?: 'auto' | 'sfu' | 'mesh';
  /** Send `leave` when the page is hidden for good (`pagehide`), so the others see you go at once. Default true. */
  leaveOnUnload?: boolean;
  /** `true`: log to `console.debug`; or a logging function. */
  debug?: boolean | ((...args: unknown[]) => void);
  /**
   * SFU rooms: the audio codec this page sends. `'auto'` (default): the browser's choice
   * (Opus). `'pcmu'` / `'pcma'`: G.711 (narrowband, 64 kbit/s), which the SIP gateway passes
   * to a phone of the same law without transcoding (docs/sip.md). Applied with
   * `RTCRtpTransceiver.setCodecPreferences`; a browser without it keeps Opus.
   */
  audioCodec?: 'auto' | 'pcmu' | 'pcma';
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

/** A remote participant of an SFU room: the same fields as a `Peer`; `pc` and `channel` are the one connection to the SFU, shared by every member. */
export class SfuMember {
  readonly id: string;
  name: string;
  identity?: string;
  /** Set for a server-side participant, e.g. `whip` (a WHIP publisher). */
  service?: string;
  /** The connection to the SFU (shared). */
  readonly pc: RTCPeerConnection;
  /** The tracks received from this participant (one stream). */
  readonly streams: MediaStream[];
  /** The SFU connection's `connectionState`. */
  readonly state: RTCPeerConnectionState;
  /** Always true: the page yields to the SFU. */
  readonly polite: boolean;
  readonly initiator: boolean;
  /** The data channel to the SFU (shared). */
  readonly channel: RTCDataChannel;
  readonly closed: boolean;
  /** Restart ICE with the SFU. */
  restartIce(): void;
  toJSON(): { id: string; name: string; identity?: string; state: RTCPeerConnectionState; polite: boolean };
}

/** Where a track comes from. */
export type TrackSource = 'camera' | 'microphone' | 'screen' | 'screen-audio' | (string & {});

/** The connection to the SFU in an SFU room (`Switchboard.sfu`). */
export interface SfuConnection {
  /** The SFU participant's peer id. */
  readonly id: string;
  readonly pc: RTCPeerConnection;
  /** The simulcast layer (`q`, `h`, `f`) the SFU says it forwards, by mid. */
  readonly layers: Map<string, string>;
  /** The dominant speaker's peer id (null: silence). */
  readonly speaker: string | null;
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
  joined: { peerId: string; peers: Array<Peer | SfuMember>; rejoined: boolean; topology: 'mesh' | 'sfu' };
  /** Someone joined after us. */
  'peer-joined': Peer | SfuMember;
  /** Someone left: `left` (on purpose), `timeout` (connection lost for good), `kicked`. */
  'peer-left': { peer: Peer | SfuMember; reason: 'left' | 'timeout' | 'kicked' | string };
  /** Remote media arrived. */
  track: { peer: Peer | SfuMember; track: MediaStreamTrack; streams: MediaStream[]; transceiver: RTCRtpTransceiver; source: TrackSource };
  /** SFU rooms: the SFU stopped forwarding a track. */
  'track-removed': { peer: SfuMember; track: MediaStreamTrack; source: TrackSource };
  /** The room changed mode: after a live mesh→SFU switch `switchMs` is how long until every peer's media decoded through the SFU; `mesh` (null) if the SFU left. */
  topology: { mode: 'mesh' | 'sfu'; switchMs: number | null };
  /** SFU rooms: the dominant speaker changed (null: silence). */
  speaker: { peer: SfuMember | { id: string; name: string } | null };
  /** SFU rooms, informative: the simulcast layer forwarded on a track changed. */
  layer: { peer: SfuMember | null; mid: string; layer: string; track: MediaStreamTrack | null };
  /** An application message (see `send`). `via` tells whether it came over the data channel or the signaling server. */
  message: { peer: Peer | SfuMember | { id: string; name: string }; data: unknown; via: 'datachannel' | 'signal' };
  /** A phone call's progress (`state`, with the SIP `reason` of a failed or ended call) or a key the phone pressed (`dtmf`), from the call's `sip` member. */
  sip: SipReport;
  /** The RTCPeerConnection's `connectionState` changed. */
  'peer-state': { peer: Peer | SfuMember; state: RTCPeerConnectionState };
  /** The data channel to `peer` opened (SFU rooms: the one to the SFU, once `peer`'s media shows up). */
  'channel-open': { peer: Peer | SfuMember };
  /** Signaling came back after a transport loss; `gap` means messages were lost and every peer connection was renegotiated with an ICE restart. */
  resumed: { gap: boolean };
  /** An error; `fatal` means the session is over. */
  error: SwitchboardError;
}

/** What a call's `sip` member reports (docs/sip.md, "For apps"). */
export interface SipReport {
  /** The call's member id. */
  peer: string;
  /** The call's id (what `sip.call` resolved to). */
  call?: string;
  state?: 'dialing' | 'ringing' | 'connected' | 'held' | 'ended';
  /** SIP status of a call that failed or ended, e.g. `486 Busy Here`. */
  reason?: string;
  /** A key the phone pressed (0-9 * # A-D). */
  dtmf?: string;
}

/** Phone calls of the room through the server's SIP gateway (`sb.sip`). */
export class SipCalls {
  /**
   * Call `to` (`sip:user@host[:port]`, a phone number, or a bare user) into the room. Rejects
   * with a SwitchboardError (`bad-request`, `unauthorized`, `forbidden`, `sip-disabled`,
   * `busy`, `unreachable`, `sip-failed`) whose `reason` is the server's.
   */
  call(to: string): Promise<{ call: string }>;
  /** End a call of the room by id (DELETE /api/sip/calls/<room>/<id>); false when the server knows no such call there. */
  cancel(callId: string): Promise<boolean>;
  /** Hang up the call whose member is `peerId`. */
  hangup(peerId: string): void;
  /** Send keys (1 to 32 of 0-9 * # A-D) to the phone as DTMF. */
  dtmf(peerId: string, digits: string): void;
}

/** Options of `Switchboard.line` (direct calls, docs/sdk.md "Direct calls"). */
export interface LineOptions {
  /** The user whose line to take (1-64 of `a-z0-9_-.`). */
  user: string;
  /** Server base URL, http(s); default: the page's origin. */
  server?: string;
  /** Same as `server`. */
  url?: string;
  /** Display name the people called see (default: the user). */
  name?: string;
  /** A room token whose `sub` is the user (servers with `--room-token-secret`). */
  token?: string;
  /** The user's secret (servers with `--call-user USER:SECRET`). */
  secret?: string;
  /** What calls publish: `true` (default: camera + microphone), a stream, a function giving one, or `false`. */
  media?: boolean | MediaStream | (() => Promise<MediaStream>);
  iceServers?: 'auto' | RTCIceServer[];
  iceTransportPolicy?: RTCIceTransportPolicy;
  transport?: 'auto' | 'ws' | 'sse';
  debug?: boolean | ((...args: unknown[]) => void);
}

/** Why a call ended (docs/signaling.md, `ended.reason`). */
export type CallEndReason =
  | 'declined'
  | 'busy'
  | 'unreachable'
  | 'cancelled'
  | 'no-answer'
  | 'hangup'
  | 'answered-elsewhere'
  | 'failed'
  | 'rate-limited'
  | (string & {});

export interface CallEvents {
  /** The call room's session, before it joins: attach listeners to it here. */
  room: Switchboard;
  /** `to` is being rung (the callee, or an invitee). */
  ringing: { to: string };
  /** `by` took the call (again for each invitee who accepts). */
  answered: { by: string };
  /** A party is out of a call that goes on. */
  left: { who: string; reason: string; detail: string };
  /** Over for this device; `local` when this device hung up, cancelled or declined. */
  ended: { reason: CallEndReason; detail: string | null; local: boolean };
  /** A request was refused (`call-refused`); nothing changed. */
  error: SwitchboardError;
}

/** A direct call, outgoing or incoming. */
export class Call {
  /** The call's id (null for an outgoing call until the server took it). */
  readonly id: string | null;
  readonly direction: 'outgoing' | 'incoming';
  /** The other party's address (`bob@b.test`). */
  readonly peer: string;
  /** The caller's display name (incoming calls). */
  readonly peerName: string;
  readonly state: 'dialing' | 'ringing' | 'incoming' | 'accepting' | 'answered' | 'ended';
  readonly reason: CallEndReason | null;
  readonly detail: string | null;
  /** The call room's session while in it. */
  readonly room: Switchboard | null;
  /** Take an incoming call on this device. */
  accept(): void;
  /** Refuse an incoming call (`declined`, the default, or `busy`). */
  decline(reason?: 'declined' | 'busy'): void;
  /** Leave: cancel before an answer, decline while ringing here, else hang up. */
  hangup(): void;
  /** Ring someone else into this call. */
  invite(to: string): void;
  on<K extends keyof CallEvents>(event: K, fn: (arg: CallEvents[K]) => void): this;
  off<K extends keyof CallEvents>(event: K, fn?: (arg: CallEvents[K]) => void): this;
  once<K extends keyof CallEvents>(event: K, fn: (arg: CallEvents[K]) => void): this;
  toJSON(): { id: string | null; direction: string; peer: string; state: string; reason: string | null; detail: string | null };
}

export interface LineEvents {
  /** Someone calls this user, or invites them into a call. */
  incoming: Call;
  /** Any new call of this device, outgoing included. */
  call: Call;
  state: SignalingState;
  error: SwitchboardError;
}

/** A signed-in line (the room `@user`). */
export class Line {
  readonly user: string;
  readonly name: string;
  readonly state: SignalingState;
  /** This device's calls by id. */
  readonly calls: Map<string, Call>;
  /** This device's peer id in the line room (kept across a resume). */
  readonly peerId: string | null;
  /** The server's calls peer in the line (null until it is there). */
  readonly callsPeer: string | null;
  /** Call `bob` or `bob@b.test`. */
  call(to: string): Call;
  /** Hang up every call and leave the line. */
  close(): Promise<void>;
  on<K extends keyof LineEvents>(event: K, fn: (arg: LineEvents[K]) => void): this;
  off<K extends keyof LineEvents>(event: K, fn?: (arg: LineEvents[K]) => void): this;
  once<K extends keyof LineEvents>(event: K, fn: (arg: LineEvents[K]) => void): this;
}

export class Switchboard {
  constructor(options: SwitchboardOptions);

  /** Sign in to `options.user`'s line to call people and be called. */
  static line(options: LineOptions): Promise<Line>;

  /** Phone calls through the server's SIP gateway. */
  readonly sip: SipCalls;

  /** Remote participants by peer id (never the SFU itself). */
  readonly peers: Map<string, Peer | SfuMember>;
  /** How this page is connected to the others now. */
  readonly topology: 'mesh' | 'sfu';
  /** SFU rooms: the connection to the SFU; null otherwise. */
  readonly sfu: SfuConnection | null;
  /** SFU rooms: the dominant speaker's peer id. */
  readonly speaker: string | null;
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
  /** The server base URL in use: with `urls`, the node the signaling is on (or was on last). */
  readonly url: string;
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
  join(): Promise<{ peerId: string; peers: Array<Peer | SfuMember> }>;

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

  /**
   * SFU rooms: how large a remote video is shown (device pixels), so the SFU forwards a
   * fitting simulcast layer; `null` or 0x0 = not shown (paused at the SFU). `target`: a
   * peer id (all its videos) or a remote video track. Debounced; no effect in mesh rooms.
   */
  setView(target: string | MediaStreamTrack, size: { width: number; height: number } | null): void;

  /** Remove a peer from the room (needs the `admin` grant; refusals arrive as `error` events). */
  kick(peerId: string): void;

  /** Restart ICE with one peer or with all. */
  restartIce(peerId?: string): void;

  /** Leave the room and close every connection (local tracks are not stopped). */
  leave(): Promise<void>;

  toJSON(): { room: string; name: string; peerId: string | null; state: SignalingState; transportKind: 'ws' | 'sse' | null; topology: 'mesh' | 'sfu' };
}

/** SDK version. */
export const VERSION: string;
/** Signaling protocol version spoken. */
export const PROTOCOL: number;

export default Switchboard;
