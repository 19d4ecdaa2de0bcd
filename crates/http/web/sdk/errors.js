// Switchboard SDK: errors.

/**
 * Error codes: every code of the signaling protocol (docs/signaling.md) plus the SDK's own.
 * @typedef {'bad-message'|'too-large'|'rate-limited'|'not-joined'|'already-joined'|'bad-room'|
 *   'room-full'|'unknown-peer'|'unauthorized'|'token-expired'|'forbidden'|'bad-resume'|'kicked'|
 *   'origin-not-allowed'|'unknown-connection'|'server-shutdown'|'unavailable'|
 *   'unreachable'|'closed'|'invalid-state'|'bad-option'|'negotiation-failed'|'peer-unreachable'|string} ErrorCode
 */

/** An error with a machine-readable `code`. */
export class SwitchboardError extends Error {
  /**
   * @param {ErrorCode} code
   * @param {string} [reason] human-readable explanation
   * @param {{fatal?: boolean, cause?: unknown}} [opts]
   */
  constructor(code, reason, opts = {}) {
    super(reason ? `${code}: ${reason}` : code, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SwitchboardError';
    /** @type {ErrorCode} */
    this.code = code;
    /** @type {string} */
    this.reason = reason || code;
    /** True when the session ended because of this error. */
    this.fatal = !!opts.fatal;
    /** The peer id the error is about (`peer-unreachable`), else undefined. @type {string|undefined} */
    this.peer = undefined;
  }

  toJSON() {
    return { code: this.code, reason: this.reason, fatal: this.fatal };
  }
}

/**
 * An `error` message from the server as a SwitchboardError.
 * @param {{code?: string, reason?: string, fatal?: boolean}} msg
 */
export function fromServerError(msg) {
  return new SwitchboardError(String(msg.code || 'unknown'), String(msg.reason || msg.code || 'server error'), {
    fatal: !!msg.fatal,
  });
}
