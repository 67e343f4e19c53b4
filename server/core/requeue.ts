/**
 * Putting accepted messages back on a recipient's queue when the session they were in flight to leaves
 * (disconnect, takeover, shutdown), and keeping them in memory while the store is down.
 *
 * One batched store write per slice of `SLICE` messages, under the recipient's queue lock, in the order they
 * were sent: a takeover with thousands in flight holds the queue for a few writes, not thousands, so other
 * senders' messages to that recipient are not stuck behind it.
 */
import { storeCall } from './accounts.ts';
import type { KeyedMutex } from './mutex.ts';
import type { NewQueuedMessage, Store } from './store.ts';

/** Messages per store write: bounds one transaction's size and one lock hold. */
const SLICE = 1000;

export type Requeued = Omit<NewQueuedMessage, 'to'>;

export class Requeuer<M extends Requeued> {
  /** Messages that could not be written while the store was down, by recipient, in send order. */
  private readonly pending = new Map<string, M[]>();
  /** Display name of each recipient with writes started or pending (for the senders' receipts). */
  private readonly names = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly lock: KeyedMutex,
    /** Called after each slice is durable (duplicates included: they are queued too). */
    private readonly onQueued: (to: string, toName: string, messages: M[]) => void,
    /** Called when a write failed; what is left waits in `pending` for `retry`. */
    private readonly onFailed: (err: unknown, to: string, left: number) => void,
  ) {}

  get pendingCount(): number {
    let n = 0;
    for (const list of this.pending.values()) n += list.length;
    return n;
  }

  /** Starts writing `messages` back to `to`'s queue; resolves when written or parked in `pending`. */
  async requeue(to: string, toName: string, messages: M[]): Promise<void> {
    if (messages.length === 0) return;
    this.names.set(to, toName);
    const parked = this.pending.get(to);
    if (parked) {
      // Earlier ones for `to` are still waiting for the store: these go after them.
      parked.push(...messages);
      return;
    }
    await this.lock.run(to, () => this.write(to, messages));
  }

  /** Writes what the store refused earlier; stops at the first failure (it stays pending). */
  async retry(): Promise<boolean> {
    for (const [to, list] of [...this.pending]) {
      this.pending.delete(to);
      const ok = await this.lock.run(to, () => this.write(to, list));
      if (!ok) return false;
    }
    return true;
  }

  private async write(to: string, messages: M[]): Promise<boolean> {
    for (let i = 0; i < messages.length; i += SLICE) {
      const slice = messages.slice(i, i + SLICE);
      try {
        await storeCall(() => this.store.enqueueBatch(to, slice.map((m) => ({
          to, from: m.from, fromKey: m.fromKey, id: m.id, text: m.text, ts: m.ts,
        }))));
      } catch (err) {
        const rest = messages.slice(i);
        const parked = this.pending.get(to);
        this.pending.set(to, parked ? [...rest, ...parked] : rest);
        this.onFailed(err, to, rest.length);
        return false;
      }
      this.onQueued(to, this.names.get(to) ?? to, slice);
    }
    if (!this.pending.has(to)) this.names.delete(to);
    return true;
  }
}
