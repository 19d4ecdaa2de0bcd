// What the app tells the user for each error code (protocol codes of docs/signaling.md,
// the SDK's own, and the app's media codes).

/**
 * @typedef {object} ErrorText
 * @property {string} title
 * @property {string} text
 * @property {'fatal'|'warn'|'transient'} kind fatal: the call is over; warn: the call goes
 *   on with a limitation (banner); transient: a passing notice (toast)
 */

/** @type {Record<string, ErrorText>} */
export const ERRORS = {
  // --- joining ---
  'room-full': {
    title: 'This room is full',
    text: 'The room already has the maximum number of participants. Try again when someone leaves, or start a new room.',
    kind: 'fatal',
  },
  unauthorized: {
    title: 'Invalid invite link',
    text: 'The access token in this link is missing, malformed or meant for another room. Ask the host for a new invite link.',
    kind: 'fatal',
  },
  'token-expired': {
    title: 'Invite link expired',
    text: 'The access token in this link has expired. Ask the host for a fresh invite link.',
    kind: 'fatal',
  },
  forbidden: {
    title: 'Not allowed',
    text: 'Your access token does not allow this. Ask the host for a link with the right permissions.',
    kind: 'transient',
  },
  'bad-room': {
    title: 'Invalid room name',
    text: 'Room names are 1–64 characters: letters, digits, “-”, “_” and “.”. Your display name must be 1–64 characters.',
    kind: 'fatal',
  },
  unreachable: {
    title: 'Can’t reach the server',
    text: 'Switchboard is not answering. Check your network connection; we keep trying.',
    kind: 'fatal',
  },
  'origin-not-allowed': {
    title: 'Connection refused',
    text: 'This server does not accept connections from this web address (origin not allowed). Ask the administrator to add it with --allowed-origin.',
    kind: 'fatal',
  },
  // --- during the call ---
  kicked: {
    title: 'You were removed from the room',
    text: 'A moderator ended your session.',
    kind: 'fatal',
  },
  'server-shutdown': {
    title: 'Server restarting',
    text: 'The server is shutting down. We reconnect as soon as it is back.',
    kind: 'transient',
  },
  'bad-resume': {
    title: 'Session expired',
    text: 'You were away too long, so you rejoined the room as a new participant.',
    kind: 'transient',
  },
  'unknown-connection': {
    title: 'Connection reset',
    text: 'The server no longer knows this event stream; reconnecting.',
    kind: 'transient',
  },
  'rate-limited': {
    title: 'Slow down',
    text: 'You are sending messages too fast; some were dropped.',
    kind: 'transient',
  },
  'too-large': {
    title: 'Message too large',
    text: 'That message is over the server’s size limit and was not delivered.',
    kind: 'transient',
  },
  'unknown-peer': {
    title: 'Participant gone',
    text: 'A message could not be delivered: that participant has left the room.',
    kind: 'transient',
  },
  'bad-message': {
    title: 'Message refused',
    text: 'The server refused a malformed message. If this keeps happening, reload the page.',
    kind: 'transient',
  },
  'not-joined': {
    title: 'Not in the room',
    text: 'The server says this connection has not joined the room. Reload the page to rejoin.',
    kind: 'transient',
  },
  'already-joined': {
    title: 'Already joined',
    text: 'This connection is already in a room.',
    kind: 'transient',
  },
  'negotiation-failed': {
    title: 'Media negotiation failed',
    text: 'Setting up audio/video with a participant failed; retrying automatically.',
    kind: 'transient',
  },
  'peer-unreachable': {
    title: 'Could not connect to a participant',
    text: 'No network path between you was found (firewalls or NATs on both sides); a relay (TURN) server is needed.',
    kind: 'transient',
  },
  closed: {
    title: 'Disconnected',
    text: 'The connection to the room was closed.',
    kind: 'fatal',
  },
  disconnected: {
    title: 'Disconnected',
    text: 'The connection to the room ended. Rejoin to continue.',
    kind: 'fatal',
  },
  // --- camera and microphone ---
  'permission-denied': {
    title: 'Camera and microphone blocked',
    text: 'You joined without sending audio or video; you can still see and hear everyone. Allow camera and microphone for this site in your browser’s settings, then use the camera or mic button.',
    kind: 'warn',
  },
  'no-devices': {
    title: 'No camera or microphone found',
    text: 'You joined without sending audio or video; you can still see and hear everyone.',
    kind: 'warn',
  },
  'device-in-use': {
    title: 'Camera or microphone unavailable',
    text: 'Another application may be using it. You joined without it; close the other app and press the camera or mic button.',
    kind: 'warn',
  },
  'insecure-context': {
    title: 'Camera needs a secure connection',
    text: 'Browsers only allow camera and microphone on https:// (or localhost). You joined receive-only.',
    kind: 'warn',
  },
  'media-failed': {
    title: 'Camera or microphone failed',
    text: 'The device could not be started.',
    kind: 'transient',
  },
  'app-error': {
    title: 'Something went wrong',
    text: 'The page could not start the call. Reload to try again.',
    kind: 'fatal',
  },
  'screen-failed': {
    title: 'Screen sharing failed',
    text: 'Your screen could not be captured.',
    kind: 'transient',
  },
};

/**
 * @param {string} code
 * @param {string} [reason] server's explanation, used for unknown codes
 * @returns {ErrorText}
 */
export function describe(code, reason) {
  return ERRORS[code] || { title: 'Something went wrong', text: reason || code, kind: 'transient' };
}
