/**
 * Delivery of rooms to sessions: one pipe per session and room hands the session the room's log above what it
 * was sent, in seq order and within the window, from the in-memory tail when it is caught up, else from the
 * store; delivery tags map the session's acknowledgements back to rooms and seqs.
 */
import { Op, type AckFrame } from '../../shared/protocol.ts';
import { storeCall } from './accounts.ts';
import type { Clock } from './clock.ts';
import type { RoomRetry } from './room-retry.ts';
import { roomWorkFailed } from './room-retry.ts';
import { tailTop, type RoomState, type RoomStates } from './room-state.ts';
import type { RoomEntry } from './room-store.ts';
import type { RoomOptions, SessionLookup } from './room-ports.ts';
import type { Session } from './session.ts';
import type { Store } from './store.ts';

/** One session's delivery of one room. */
export interface Pipe {
  room: string;
  /** Highest seq sent to the session. */
  sent: number;
  /** Seqs sent and not yet acknowledged, ascending. */
  unacked: number[];
  /** The room's last seq when the pipe opened: what is at or below it waited (history, or missed while away). */
  backlogTo: number;
  running: boolean;
  dirty: boolean;
}

interface SessionRooms {
  pipes: Map<string, Pipe>;
  /** Delivery tags of room messages -> where they came from. */
  tags: Map<number, { room: string; seq: number }>;
}

export class RoomPipes {
  private readonly bySession = new WeakMap<Session, SessionRooms>();
  /** Pipes whose store read failed, pumped again by `retry`. */
  private readonly stalled = new Map<Pipe, Session>();

  constructor(
    private readonly store: Store,
    private readonly opts: RoomOptions,
    private readonly online: SessionLookup,
    private readonly clock: Clock,
    private readonly states: RoomStates,
    private readonly retryer: RoomRetry,
    private readonly storeDown: () => void,
  ) {}

  /** Opens `s`'s pipe of `room` above `cursor` and starts it. */
  open(s: Session, room: string, cursor: number): void {
    const sr = this.pipes(s);
    const st = this.states.loaded(room);
    const backlogTo = st ? tailTop(st) : 0;
    const p: Pipe = { room, sent: cursor, unacked: [], backlogTo, running: false, dirty: false };
    sr.pipes.set(room, p);
    void this.pump(s, p);
  }

  private pipes(s: Session): SessionRooms {
    let sr = this.bySession.get(s);
    if (!sr) this.bySession.set(s, (sr = { pipes: new Map(), tags: new Map() }));
    return sr;
  }

  /** Whether `s` has a pipe of `room`. */
  has(s: Session, room: string): boolean {
    return this.bySession.get(s)?.pipes.has(room) ?? false;
  }

  /** `s`'s pipe of `room` sends nothing more, and its tags of the room are forgotten. */
  close(s: Session, room: string): void {
    const sr = this.bySession.get(s);
    sr?.pipes.delete(room);
    if (sr) for (const [tag, t] of sr.tags) if (t.room === room) sr.tags.delete(tag);
  }

  /** The session closed: its pipes are forgotten; the rooms it had pipes of, or undefined when it had none. */
  forget(s: Session): string[] | undefined {
    const sr = this.bySession.get(s);
    if (!sr) return undefined;
    this.bySession.delete(s);
    return [...sr.pipes.keys()];
  }

  /** Acknowledged tags leave their pipes' unacknowledged seqs: the pipes they touched. */
  acked(s: Session, f: AckFrame): Set<Pipe> {
    const touched = new Set<Pipe>();
    const sr = this.bySession.get(s);
    if (!sr || sr.tags.size === 0) return touched;
    for (const tag of f.tags) {
      const t = sr.tags.get(tag);
      if (!t) continue;
      sr.tags.delete(tag);
      const p = sr.pipes.get(t.room);
      if (!p) continue;
      const i = p.unacked.indexOf(t.seq);
      if (i >= 0) p.unacked.splice(i, 1);
      touched.add(p);
    }
    return touched;
  }

  /** Every online member's pipe of the room reads what is new. */
  wake(st: RoomState): void {
    for (const key of st.members.keys()) {
      const s = this.online.get(key);
      const p = s && this.bySession.get(s)?.pipes.get(st.rec.key);
      if (s && p) void this.pump(s, p);
    }
  }

  /** The store answers again: the pipes its failures stopped read on. */
  retry(): void {
    const pipes = [...this.stalled];
    this.stalled.clear();
    for (const [p, s] of pipes) void this.pump(s, p);
  }

  /** Hands the session what the room's log holds above what it was sent, within the window. One loop per pipe. */
  async pump(s: Session, p: Pipe): Promise<void> {
    if (p.running) {
      p.dirty = true;
      return;
    }
    p.running = true;
    try {
      for (;;) {
        p.dirty = false;
        const st = this.states.loaded(p.room);
        const sr = this.bySession.get(s);
        if (!st || !sr || sr.pipes.get(p.room) !== p || !st.members.has(s.key) || s.phase === 'closed') return;
        const room = p.room;
        const roomName = st.rec.name;
        const space = this.opts.window - p.unacked.length;
        if (space <= 0) return;
        let entries: RoomEntry[];
        if (p.sent >= st.tailBase) {
          entries = [];
          for (const e of st.tail) if (e.seq > p.sent && entries.length < space) entries.push(e);
        } else {
          entries = await storeCall(() => this.store.rooms.fetchRoom(room, p.sent, Math.min(space, this.opts.batch), this.clock.now() - this.opts.retentionMs));
          this.retryer.answered(); // the store answers
          if (entries.length === 0) {
            p.sent = Math.max(p.sent, st.tailBase); // nothing left in the log below the tail (trimmed or expired)
            continue;
          }
        }
        for (const e of entries) {
          // Removal takes effect at once: the pipe checks membership before every message.
          if (!st.members.has(s.key) || sr.pipes.get(p.room) !== p || isClosed(s)) return;
          if (e.seq <= p.sent) continue;
          p.unacked.push(e.seq);
          p.sent = e.seq;
          this.hand(s, sr, p, roomName, e);
        }
        if (entries.length === 0 && !p.dirty) return;
      }
    } catch (err) {
      roomWorkFailed(s, err, 'room delivery paused', this.storeDown);
      this.stalled.set(p, s);
      this.retryer.later();
    } finally {
      p.running = false;
    }
  }

  /** Sends one room entry to the session under a new delivery tag (the caller keeps `p.unacked` and `p.sent`). */
  private hand(s: Session, sr: SessionRooms, p: Pipe, roomName: string, e: RoomEntry): void {
    const tag = s.activity.nextTag++;
    sr.tags.set(tag, { room: p.room, seq: e.seq });
    s.send({
      t: Op.Message, tag, id: e.id, from: e.from, text: e.text, ts: e.ts, room: roomName, rseq: e.seq,
      ...(e.seq <= p.backlogTo ? { queued: true } : {}), ...(e.line !== undefined ? { line: e.line } : {}),
    });
  }

  /**
   * Entry `e` was just put in the tail below the top (`RoomLog.placeLate`): the online members whose pipes already
   * passed its seq get it now, out of order (clients order by rseq), so no cursor moves over it unseen.
   */
  late(st: RoomState, e: RoomEntry): void {
    const seq = e.seq;
    for (const key of st.members.keys()) {
      const s = this.online.get(key);
      const sr = s && this.bySession.get(s);
      const p = sr?.pipes.get(st.rec.key);
      if (!s || !sr || !p || isClosed(s) || p.sent < seq) continue; // a pipe below it reads it from the tail
      const i = p.unacked.findIndex((x) => x > seq);
      p.unacked.splice(i < 0 ? p.unacked.length : i, 0, seq);
      this.hand(s, sr, p, st.rec.name, e);
    }
  }
}

/** Read through a call: the phase changes across awaits, which narrowing does not see. */
function isClosed(s: Session): boolean {
  return s.phase === 'closed';
}
