/**
 * A room's state in memory on the node that serves it: its record, members with their cursors, the tail of its
 * log, loaded from the store once per node and forgotten when the room moves to another node (`Rooms.unload`).
 */
import { storeCall } from './accounts.ts';
import type { Timer } from './clock.ts';
import type { RoomEntry, RoomRecord } from './room-store.ts';
import type { RoomPlacement } from './room-ports.ts';
import { RouterError } from './router.ts';
import type { Store } from './store.ts';

export interface Member {
  name: string;
  /** Acknowledged up to here (durable once `written` reaches it). */
  cursor: number;
  written: number;
  writing: boolean;
}

export interface RoomState {
  rec: RoomRecord;
  members: Map<string, Member>;
  /** Entries appended by this node, in seq order, every one above `tailBase`, with nothing missing between. */
  tail: RoomEntry[];
  tailBase: number;
  movesSinceTrim: number;
  /** Set while cursor writes of the room wait to be batched (see `RoomCursors.due`). */
  flush: Timer | undefined;
  /** The last append issued: each waits for the one before it to reach the tail (see `RoomLog.appendInOrder`). */
  appended: Promise<unknown>;
}

/** The highest seq the room's tail holds, or its base when the tail is empty. */
export function tailTop(st: RoomState): number {
  return st.tail.length > 0 ? st.tail[st.tail.length - 1]!.seq : st.tailBase;
}

export function member(name: string, cursor: number): Member {
  return { name, cursor, written: cursor, writing: false };
}

/** The rooms this node has loaded, by room key. */
export class RoomStates {
  private readonly states = new Map<string, Promise<RoomState | null>>();
  /** The same states once loaded, for synchronous reads (acks, fan-out). */
  private readonly resolved = new Map<string, RoomState>();

  constructor(
    private readonly store: Store,
    /** The placement as it is now (set on `Rooms` after construction when there are several nodes). */
    private readonly placement: () => RoomPlacement | undefined,
  ) {}

  /** The room's state, loaded once per node; null when there is no such room. */
  state(key: string): Promise<RoomState | null> {
    let p = this.states.get(key);
    if (!p) {
      // Neither a missing room nor an outage is remembered: the next call asks the store again.
      p = this.load(key).then((st) => {
        if (st) this.resolved.set(key, st);
        else this.states.delete(key);
        return st;
      }, (err: unknown) => {
        this.states.delete(key);
        throw err;
      });
      this.states.set(key, p);
    }
    return p;
  }

  private async load(key: string): Promise<RoomState | null> {
    const rec = await storeCall(() => this.store.rooms.getRoom(key));
    if (!rec) return null;
    const [list, last] = await Promise.all([
      storeCall(() => this.store.rooms.members(key)),
      storeCall(() => this.store.rooms.historyStart(key, 0, 0)),
    ]);
    // Several nodes: the claim may have moved while the room loaded (`unload` found nothing to forget then).
    const placement = this.placement();
    if (placement && !placement.owns(key)) throw new RouterError('STALE_EPOCH', 'the room moved to another node while it loaded');
    return { rec, members: new Map(list.map((m) => [m.key, member(m.name, m.cursor)])), tail: [], tailBase: last, movesSinceTrim: 0, flush: undefined, appended: Promise.resolve() };
  }

  /** The state of a room already loaded, read synchronously. */
  loaded(key: string): RoomState | undefined {
    return this.resolved.get(key);
  }

  /** A room this node just created. */
  add(key: string, st: RoomState): void {
    this.states.set(key, Promise.resolve(st));
    this.resolved.set(key, st);
  }

  /** Forgets room `key`; its state if it was loaded. */
  forget(key: string): RoomState | undefined {
    const st = this.resolved.get(key);
    this.states.delete(key);
    this.resolved.delete(key);
    return st;
  }
}
