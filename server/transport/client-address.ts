/**
 * The address a request came from, for per-address limits (sign-in failures, registrations). Behind a reverse
 * proxy every socket comes from the proxy, so its `X-Forwarded-For` is read, but only when the socket's peer is
 * one of the configured trusted proxies (`TRUSTED_PROXY`): anyone else could write that header.
 */
import { isIP } from 'node:net';

/**
 * An IPv4 peer on a dual-stack socket (`::ffff:1.2.3.4`, or uWS's `0000:…:ffff:0102:0304`) as `1.2.3.4`; other
 * addresses lower case, as given.
 */
export function normalizeAddress(raw: string): string {
  const a = raw.trim().toLowerCase();
  const dotted = /^(?:0{1,4}:){5}ffff:(\d+\.\d+\.\d+\.\d+)$|^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted) return (dotted[1] ?? dotted[2])!;
  const hex = /^(?:0{1,4}:){5}ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$|^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (!hex) return a;
  const hi = parseInt(hex[1] ?? hex[3]!, 16);
  const lo = parseInt(hex[2] ?? hex[4]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/**
 * `peer` is the socket's address; `forwardedFor` the request's X-Forwarded-For ('' when absent). From a trusted
 * proxy, the right-most forwarded address that is not itself a trusted proxy (each proxy appends the address it
 * saw, so entries further left were written by the client and prove nothing); otherwise the peer.
 */
export function clientAddress(peer: string, forwardedFor: string, trusted: ReadonlySet<string>): string {
  const p = normalizeAddress(peer);
  if (!trusted.has(p) || forwardedFor === '') return p;
  const hops = forwardedFor.split(',').map(normalizeAddress);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) return p; // a malformed entry: trust nothing beyond the proxy
    if (!trusted.has(hop)) return hop;
  }
  return p;
}
