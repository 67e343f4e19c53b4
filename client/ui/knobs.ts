/**
 * Test-only knobs, read once from the page's URL. They exist so the end-to-end tests can prove that a video
 * plays before its last byte has been relayed: on a fast machine a few-second clip otherwise arrives whole in
 * a blink, and "played while arriving" could not be told from "played after arriving".
 *
 *   ?test-recv-rate=<bytes per second>   the recipient takes the stream's bytes no faster than this; since
 *                                        credit is granted only as bytes are taken, the sender and the relay
 *                                        slow down to match (end-to-end flow control, nothing is dropped).
 *   ?test-recv-window=<bytes>            the credit window the recipient grants when accepting (default 2 MiB).
 *   ?test-prepare-rate=<bytes per second> the sender's preparation reads the file no faster than this (a slow
 *                                        disk), so a test can see its progress and cancel it midway.
 *
 * None changes what the page shows or allows; each only slows a side down. Unset: no effect.
 */
function positive(name: string): number | undefined {
  const raw = new URLSearchParams(location.search).get(name);
  const n = raw === null ? NaN : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

export const knobs = {
  recvRate: positive('test-recv-rate'),
  recvWindow: positive('test-recv-window'),
  prepareRate: positive('test-prepare-rate'),
};
