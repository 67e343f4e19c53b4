/**
 * Senders' delivery counts of room messages, `[id, room, delivered, of]`: worked out from the members' cursors,
 * and sent again, batched per sender once a turn, as cursors pass the entries in the tail.
 */
import { Op, type RoomReceiptItem } from '../../shared/protocol.ts';
import type { RoomState, RoomStates } from './room-state.ts';
import type { SessionLookup } from './room-ports.ts';

export class RoomCounts {
  /** Senders' entries whose counts changed this turn: room key -> seqs. */
  private readonly countsDue = new Map<string, Set<number>>();

  constructor(private readonly states: RoomStates, private readonly online: SessionLookup) {}

  counts(st: RoomState, senderKey: string, id: string, seq: number): RoomReceiptItem {
    let of = 0;
    let delivered = 0;
    for (const [key, m] of st.members) {
      if (key === senderKey) continue;
      of++;
      if (m.cursor >= seq) delivered++;
    }
    return [id, st.rec.name, delivered, of];
  }

  /** Member `key`'s cursor moved from `from` to `to`: the senders of the entries it passed get new counts. */
  moved(st: RoomState, key: string, from: number, to: number): void {
    let due = this.countsDue.get(st.rec.key);
    for (const e of st.tail) {
      if (e.seq <= from || e.line !== undefined || e.fromKey === key) continue;
      if (e.seq > to) break;
      if (!due) {
        if (this.countsDue.size === 0) setImmediate(this.flushCounts);
        this.countsDue.set(st.rec.key, (due = new Set()));
      }
      due.add(e.seq);
    }
  }

  private readonly flushCounts = (): void => {
    const bySender = new Map<string, RoomReceiptItem[]>();
    for (const [room, seqs] of this.countsDue) {
      const st = this.states.loaded(room);
      if (!st) continue;
      for (const e of st.tail) {
        if (!seqs.has(e.seq)) continue;
        const items = bySender.get(e.fromKey) ?? [];
        items.push(this.counts(st, e.fromKey, e.id, e.seq));
        bySender.set(e.fromKey, items);
      }
    }
    this.countsDue.clear();
    for (const [key, items] of bySender) {
      const s = this.online.get(key);
      if (!s || s.phase === 'closed') continue;
      for (let i = 0; i < items.length; i += 1000) s.send({ t: Op.RoomReceipt, items: items.slice(i, i + 1000) });
    }
  };
}
