/**
 * Room work a store failure stopped (a session's rooms that could not start, a pipe whose store read failed):
 * reported, then tried again after a delay that doubles while the store keeps failing.
 */
import type { Clock, Timer } from './clock.ts';
import { AppError } from './errors.ts';
import type { Session } from './session.ts';

/**
 * Tried again after this, doubling to RETRY_MAX_MS while they keep failing, and at once when the store is back
 * (`Rooms.storeBack`): nothing waits for a frame that may never come.
 */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

/** One timer for all of a node's room retries; `run` tries everything that waits. */
export class RoomRetry {
  private timer: Timer | undefined;
  private delay = RETRY_MIN_MS;

  constructor(private readonly clock: Clock, private readonly run: () => void) {}

  /** The store answers again: what it stopped goes on now. */
  back(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.delay = RETRY_MIN_MS;
    this.run();
  }

  /** Something failed: `run` after the current delay, unless a retry is set already. */
  later(): void {
    if (this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.delay = Math.min(this.delay * 2, RETRY_MAX_MS);
      this.run();
    }, this.delay);
    this.timer.unref?.();
  }

  /** A store read succeeded: the next failure waits the shortest delay again. */
  answered(): void {
    this.delay = RETRY_MIN_MS;
  }
}

/** Logs room work that failed for `s`; a store outage is also reported to the store's health. */
export function roomWorkFailed(s: Session, err: unknown, what: string, storeDown: () => void): void {
  if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') {
    storeDown();
    s.log.warn({}, `${what}: store unavailable`);
  } else if (!(err instanceof AppError)) s.log.error({ err }, what);
}
