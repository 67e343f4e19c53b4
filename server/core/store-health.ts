/**
 * Store health: whether the store answers, and getting it back. On the first outage `down()` starts probing the
 * store (`ping`) with backoff (250 ms doubling to 5 s); when a probe succeeds it turns `up` and calls `onBack`
 * (the hub writes pending requeues and resumes paused drains there).
 */
import type { Clock, Timer } from './clock.ts';
import type { Logger } from './logger.ts';
import type { Store } from './store.ts';

export class StoreHealth {
  private isUp = true;
  private recovering: Timer | undefined;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly onBack: () => Promise<void>,
  ) {}

  get up(): boolean {
    return this.isUp;
  }

  /** A store call failed as unavailable: mark it down and probe until it answers. Idempotent. */
  down(): void {
    if (this.isUp) this.log.warn({ store: this.store.kind }, 'store unavailable; will retry');
    this.isUp = false;
    if (this.recovering || this.stopped) return;
    const probe = async (delay: number): Promise<void> => {
      const ok = await this.store.ping().catch(() => false);
      if (this.stopped) return;
      if (!ok) {
        this.recovering = this.clock.setTimeout(() => void probe(Math.min(delay * 2, 5000)), delay);
        this.recovering.unref?.();
        return;
      }
      this.recovering = undefined;
      this.isUp = true;
      this.log.info({ store: this.store.kind }, 'store available again');
      await this.onBack();
    };
    this.recovering = this.clock.setTimeout(() => void probe(250), 250);
    this.recovering.unref?.();
  }

  /** Stops probing (shutdown). */
  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.recovering);
    this.recovering = undefined;
  }
}
