/**
 * Time as the core sees it: the wall clock and timers, injected so that unit tests can state an interleaving
 * (advance the clock, fire the probe timer) instead of waiting for it. `systemClock` is the real one.
 */
export interface Timer {
  /** Lets the process exit while the timer is pending (Node's `unref`); a no-op for fake clocks. */
  unref?(): unknown;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(t: Timer | undefined): void;
  setInterval(fn: () => void, ms: number): Timer;
  clearInterval(t: Timer | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout> | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t as ReturnType<typeof setInterval> | undefined),
};
