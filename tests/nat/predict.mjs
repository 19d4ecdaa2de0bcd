// What ICE (RFC 8445) predicts for a call between two clients of the NAT lab, from the RFC
// 4787 behaviour of each side's NAT. The matrix (matrix.mjs) asserts Chromium does exactly
// this; docs/nat-matrix.md explains the rules.

/**
 * The lab's client kinds. mapping/filtering in RFC 4787 terms; udp: false when no UDP gets
 * out at all (only TCP to port 443).
 */
export const KINDS = {
  open: { label: 'open (no NAT)', mapping: 'none', filtering: 'none', udp: true },
  fullcone: { label: 'full cone', mapping: 'EIM', filtering: 'EIF', udp: true },
  restricted: { label: 'port-restricted cone', mapping: 'EIM', filtering: 'APDF', udp: true },
  symmetric: { label: 'symmetric', mapping: 'APDM', filtering: 'APDF', udp: true },
  fw443: { label: 'firewall: TCP 443 only', mapping: 'none', filtering: 'all-udp-blocked', udp: false },
};

/**
 * Can a and b reach each other without a relay? Both need UDP. Then a direct path exists
 * unless both sides filter by the remote port (APDF) and one side's mapping changes per
 * destination (APDM): the symmetric side's checks then come from a port the other side's
 * NAT never sent to, and its own NAT drops the other side's checks to the port it learned
 * from STUN. A side that lets in anyone (EIF, or no NAT) receives the other side's checks
 * whatever port they come from, and answers them to that peer-reflexive address.
 */
export function directPossible(a, b) {
  const A = KINDS[a];
  const B = KINDS[b];
  if (!A.udp || !B.udp) return false;
  const strict = (k) => k.filtering === 'APDF';
  const varies = (k) => k.mapping === 'APDM';
  return !(strict(A) && strict(B) && (varies(A) || varies(B)));
}

/**
 * The prediction for a case: does the call connect, and which sides must use a relay
 * candidate (and over what). turn: whether the ICE servers include TURN.
 * Returns { connects, relay: { a: need, b: need } } with need one of
 *   'none'     this side's selected local candidate must not be a relay
 *   'tls'      it must be a relay reached over TURN/TLS (the 443-only firewall)
 *   'one-side' at least one of the two sides relays (no direct path exists); the
 *              most direct path relays on one side only (checked separately)
 */
export function predict(a, b, turn) {
  if (directPossible(a, b)) return { connects: true, relay: { a: 'none', b: 'none' } };
  if (!turn) return { connects: false, relay: null };
  const A = KINDS[a];
  const B = KINDS[b];
  if (!A.udp || !B.udp) {
    // A side without UDP can only send through its TURN/TLS allocation; the other side
    // (if it has UDP) reaches that relay address directly, through its own NAT.
    return { connects: true, relay: { a: A.udp ? 'none' : 'tls', b: B.udp ? 'none' : 'tls' } };
  }
  return { connects: true, relay: { a: 'one-side', b: 'one-side' } };
}
