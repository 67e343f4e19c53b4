/**
 * Writing members' room cursors to the store: batched per room, one write at a time per member, latest value
 * only; the room's log is trimmed now and then as cursors move.
 */
import { storeCall } from './accounts.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { KeyedMutex } from './mutex.ts';
import type { Member, RoomState } from './room-state.ts';
import type { RoomOptions } from './room-ports.ts';
import type { Store } from './store.ts';

/** Cursor writes of a room between two trims of its log. */
const TRIM_EVERY = 64;
/**
 * A member's cursor is written once it moved this far, or CURSOR_DELAY_MS after it moved, or when its session
 * closes: a cursor that lags in the store only means messages come again after a crash (clients de-duplicate
 * by room and seq), and writing every acknowledgement of every member would cost the store one write per
 * member per message.
 */
const CURSOR_BATCH = 128;
const CURSOR_DELAY_MS = 200;

export class RoomCursors {
  constructor(
    private readonly store: Store,
    /** The rooms' lock (`Rooms`): trims run under it. */
    private readonly lock: KeyedMutex,
    private readonly opts: Pick<RoomOptions, 'historyCount'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly storeDown: () => void,
  ) {}

  /** A member's cursor moved in memory: written now if it moved far, else with the room's next batch. */
  due(st: RoomState, key: string, m: Member): void {
    if (m.cursor - m.written >= CURSOR_BATCH) {
      void this.write(st, key, m);
      return;
    }
    if (st.flush !== undefined) return;
    st.flush = this.clock.setTimeout(() => {
      st.flush = undefined;
      for (const [k, member] of st.members) if (member.cursor > member.written) void this.write(st, k, member);
    }, CURSOR_DELAY_MS);
    st.flush.unref?.();
  }

  /** Writes a member's cursor, latest value only, one write at a time; trims the log now and then. */
  async write(st: RoomState, key: string, m: Member): Promise<void> {
    if (m.writing) return;
    m.writing = true;
    try {
      while (m.written < m.cursor && st.members.get(key) === m) {
        const to = m.cursor;
        await storeCall(() => this.store.rooms.advanceCursor(st.rec.key, key, to));
        m.written = to;
        if (++st.movesSinceTrim >= TRIM_EVERY) {
          st.movesSinceTrim = 0;
          void this.lock.run(st.rec.key, () => storeCall(() => this.store.rooms.trimRoom(st.rec.key, this.opts.historyCount))).catch((err: unknown) => {
            this.log.warn({ err, room: st.rec.key }, 'could not trim a room log');
          });
        }
      }
    } catch (err) {
      // The cursor stays behind in the store: those messages come again at the next sign-in (clients de-duplicate).
      this.log.warn({ err, room: st.rec.key }, 'could not write a room cursor');
      if (err instanceof AppError && err.code === 'STORE_UNAVAILABLE') this.storeDown();
    } finally {
      m.writing = false;
    }
  }
}
