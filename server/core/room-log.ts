/**
 * Appends to a room's log, in the room's lock order, and the in-memory tail they go in: kept the log's exact
 * suffix (gaps below an append read first, late entries put in their place, an earlier owner's appends read in).
 */
import { storeCall } from './accounts.ts';
import type { Clock } from './clock.ts';
import type { Logger } from './logger.ts';
import type { RoomPipes } from './room-pipes.ts';
import { tailTop, type RoomState, type RoomStates } from './room-state.ts';
import type { AppendResult, NewRoomEntry, RoomEntry } from './room-store.ts';
import type { RoomOptions, RoomPlacement } from './room-ports.ts';
import type { Store } from './store.ts';

/** Entries of a room kept in memory per room, beyond the history count. */
const TAIL_EXTRA = 2000;
/**
 * Several nodes: reads of a gap in the log below an append of this node before it goes in the tail anyway
 * (`fillGap`), GAP_WAIT_MS apart.
 */
const GAP_READS = 4;
const GAP_WAIT_MS = 50;

export class RoomLog {
  constructor(
    private readonly store: Store,
    private readonly opts: RoomOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** The placement as it is now (set on `Rooms` after construction when there are several nodes). */
    private readonly placement: () => RoomPlacement | undefined,
    private readonly states: RoomStates,
    private readonly pipes: RoomPipes,
  ) {}

  /**
   * Issues an append now (call it under the room's lock, so seqs follow the lock's order) and resolves once it is
   * durable and, if stored, in the tail: after every append issued before it, so the tail stays in seq order with
   * nothing missing between. The store takes seqs in call order (embedded: write transactions run in the order
   * they were issued; MongoDB: the seq is claimed before the adapter's first await).
   */
  appendInOrder(st: RoomState, entry: NewRoomEntry, cap: number): Promise<AppendResult> {
    const appending = storeCall(() => this.store.rooms.append(entry, cap));
    const done = st.appended.then(() => appending).then(async (r) => {
      if (r.status === 'stored') {
        if (this.placement()) await this.fillGap(st, r.seq);
        this.push(st, { ...entry, seq: r.seq });
      }
      else if (r.status === 'duplicate') {
        void this.placeLate(st, r.seq).catch((err: unknown) => this.log.warn({ err, room: st.rec.key }, 'could not place a late room entry'));
      }
      return r;
    });
    st.appended = done.catch(() => undefined);
    return done;
  }

  /**
   * Several nodes: a node that owned the room before this one says its last appends are done. What they added
   * above the tail goes in it now, in the append order (after the appends this node issued before), and the
   * members' pipes read it.
   */
  refresh(key: string): void {
    const st = this.states.loaded(key);
    if (!st) return;
    const done = st.appended.then(async () => {
      for (;;) {
        const top = tailTop(st);
        const more = await storeCall(() => this.store.rooms.fetchRoom(key, top, this.opts.batch, 0));
        for (const e of more) this.push(st, e);
        if (more.length < this.opts.batch) break;
      }
      this.pipes.wake(st);
    }).catch((err: unknown) => this.log.warn({ err, room: key }, 'could not read what an earlier owner appended'));
    st.appended = done;
  }

  /**
   * With several nodes, entries can land in the log that this node did not append: those of a node that owned
   * the room until its claim moved here, appended while this node loaded it. Before an append of its own goes in
   * the tail, whatever the store holds between the tail's top and it goes in first, so the tail stays the log's
   * exact suffix and no pipe passes an entry it never read. (One node: every append is this node's, in order.)
   */
  private async fillGap(st: RoomState, seq: number): Promise<void> {
    try {
      for (let read = 0; ; read++) {
        const top = tailTop(st);
        if (seq <= top + 1) return;
        const missing = await storeCall(() => this.store.rooms.fetchRoom(st.rec.key, top, seq - top - 1, 0));
        for (const e of missing) if (e.seq < seq) this.push(st, e);
        // Seqs are not dense (MongoDB: a claimed seq whose insert failed is a hole), so a gap may be for good;
        // but one the earlier owner's append is still filling shows up within a round trip or two.
        if (read >= GAP_READS - 1 || missing.length >= seq - top - 1) return;
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, GAP_WAIT_MS));
      }
    } catch (err) {
      // Unread: the pipes read that stretch from the store instead (tailBase above it).
      this.log.warn({ err, room: st.rec.key }, 'could not read a room log gap');
      st.tail = [];
      st.tailBase = seq - 1;
    }
  }

  private push(st: RoomState, e: RoomEntry): void {
    const top = tailTop(st);
    if (e.seq <= top) return;
    st.tail.push(e);
    const max = this.opts.historyCount + TAIL_EXTRA;
    if (st.tail.length > max) {
      const dropped = st.tail.splice(0, st.tail.length - max);
      st.tailBase = dropped[dropped.length - 1]!.seq;
    }
  }

  /**
   * A resend was answered with a seq above the tail's base that the tail lacks: an append whose reply was lost
   * (the store wrote it, the adapter saw an error) left a hole. The entry is read back and put in its place, and
   * the pipes that already passed its seq get it now (`RoomPipes.late`).
   */
  private async placeLate(st: RoomState, seq: number): Promise<void> {
    if (seq <= st.tailBase || st.tail.some((x) => x.seq === seq)) return;
    const [e] = await storeCall(() => this.store.rooms.fetchRoom(st.rec.key, seq - 1, 1, 0));
    if (!e || e.seq !== seq || seq <= st.tailBase || st.tail.some((x) => x.seq === seq)) return;
    const at = st.tail.findIndex((x) => x.seq > seq);
    st.tail.splice(at < 0 ? st.tail.length : at, 0, e);
    this.pipes.late(st, e);
  }
}
