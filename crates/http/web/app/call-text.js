// What the calls UI says, in words, for each way a call ends (docs/signaling.md "ended.reason"),
// for a party leaving a call that goes on, and for a refused sign-in.

/**
 * The end of a call as shown to this user.
 * @param {{direction: string, peer: string, peerName?: string}} call
 * @param {{reason: string, detail?: string|null, local?: boolean}} e the `ended` event
 * @returns {{reason: string, text: string}}
 */
export function outcome(call, e, who = call.peer) {
  const detail = e.detail ? ` (${e.detail})` : '';
  const incoming = call.direction === 'incoming';
  /** @type {Record<string, string>} */
  const texts = {
    declined: e.local ? `You declined the call from ${who}.` : `${who} declined the call.`,
    busy: e.local ? `You told ${who} you are busy.` : `${who} is busy${detail}.`,
    unreachable: `${who} can’t be reached${detail}.`,
    cancelled: e.local ? 'You cancelled the call.' : incoming ? `Missed call: ${who} cancelled.` : `The call was cancelled${detail}.`,
    'no-answer': incoming ? `Missed call from ${who}: not answered in time.` : `${who} did not answer.`,
    hangup: e.local ? 'You hung up.' : `${who} hung up.`,
    'answered-elsewhere': `The call from ${who} was answered on another device.`,
    'rate-limited': `Too many calls in a minute: wait a moment and try again${detail}.`,
    failed: `The call failed${detail}.`,
  };
  return { reason: e.reason, text: texts[e.reason] || `The call ended: ${e.reason}${detail}.` };
}

/**
 * A party is out of a call that goes on (`left`).
 * @param {{who: string, reason: string, detail?: string}} e
 */
export function partyNote(e) {
  const detail = e.detail ? ` (${e.detail})` : '';
  /** @type {Record<string, string>} */
  const texts = {
    declined: `${e.who} declined the invitation.`,
    busy: `${e.who} is busy${detail}.`,
    unreachable: `${e.who} can’t be reached${detail}.`,
    'no-answer': `${e.who} did not answer.`,
    hangup: `${e.who} hung up.`,
    cancelled: `${e.who} left.`,
  };
  return texts[e.reason] || `${e.who} left the call${detail}.`;
}

/**
 * Why signing in failed.
 * @param {string} code the SDK's error code
 * @param {string} reason the server's words
 */
export function signInError(code, reason) {
  /** @type {Record<string, string>} */
  const texts = {
    forbidden: 'That user name is not yours: your token names another user.',
    unauthorized: 'Wrong password or token for that user name.',
    'token-expired': 'Your sign-in token has expired.',
    'bad-room': 'A user name is 1–64 letters, digits, “-”, “_” or “.”.',
    'room-full': 'Too many devices are signed in as that user.',
    'bad-option': 'A user name is 1–64 letters, digits, “-”, “_” or “.”.',
    unreachable: 'Can’t reach the server. Check your network and try again.',
  };
  return texts[code] || `Could not sign in: ${reason || code}.`;
}
