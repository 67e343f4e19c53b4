/**
 * Read receipts and typing indicators: small signals between two people that are relayed to the other side's
 * live session (on this node, or through the router on whichever node holds them) and never stored. The reader's
 * or typist's name is stamped from the session, never taken from the frame. A signal for someone who is not
 * online is dropped, by rule (docs/protocol.md, "Read receipts and
 * typing"): typing is only worth anything now, and a `read` for an offline sender is re-sent by the reader's
 * client when the sender comes back online (best effort; the server keeps nothing).
 *
 * Every frame has passed the hub's per-connection frame-rate bucket already; typing `on` is further limited to
 * one forward per peer per `Typing.renewMs / 2`, so a client that sends one per keystroke costs its peer little.
 */
import { nameKey, normalizeName } from '../../shared/names.ts';
import { Op, Typing, type ReadByFrame, type ReadFrame, type TypingFrame, type TypingFromFrame } from '../../shared/protocol.ts';
import type { Session } from './hub.ts';

const TYPING_MIN_GAP_MS = Typing.renewMs / 2;
/** `read` frames held for a session that is online but has not said hello yet (see `ready`). */
const MAX_WAITING_READS = 20;

export class PeerSignals {
  /** Last typing `on` forwarded, per typist session, as [peer key, time]. Weak: goes with the session. */
  private readonly lastTyping = new WeakMap<Session, [string, number]>();
  /**
   * A session is announced online (presence) when its socket opens, before its `hello`; a reader's client
   * that sends `read` on seeing that presence must not lose it, so reads for a session still in hello wait
   * here (a few frames at most) until `ready()`.
   */
  private readonly waiting = new WeakMap<Session, ReadByFrame[]>();

  constructor(
    private readonly online: (key: string) => Session | undefined,
    /** A signal for a name with no session here: to whichever node holds it (best effort, as here). */
    private readonly elsewhere: (key: string, frame: ReadByFrame | TypingFromFrame) => void = () => undefined,
  ) {}

  read(s: Session, f: ReadFrame): void {
    const key = this.keyOf(s, f.to);
    if (key === undefined) return;
    const frame: ReadByFrame = { t: Op.ReadBy, by: s.name, ids: f.ids };
    const peer = this.online(key);
    if (peer) this.hand(peer, frame);
    else this.elsewhere(key, frame);
  }

  /** A signal from another node for `peer`, a session here. */
  fromNode(peer: Session, frame: ReadByFrame | TypingFromFrame): void {
    this.hand(peer, frame);
  }

  /** A `read` waits for a session still saying hello; typing for one that is not ready is dropped. */
  private hand(peer: Session, frame: ReadByFrame | TypingFromFrame): void {
    if (peer.phase === 'closed') return;
    if (peer.phase !== 'hello' && peer.phase !== 'claiming') return peer.send(frame);
    if (frame.t !== Op.ReadBy) return;
    const list = this.waiting.get(peer) ?? [];
    if (list.length < MAX_WAITING_READS) list.push(frame);
    this.waiting.set(peer, list);
  }

  /** `s` has been welcomed: hands it the reads that arrived while it was saying hello. */
  ready(s: Session): void {
    const list = this.waiting.get(s);
    if (!list) return;
    this.waiting.delete(s);
    for (const f of list) s.send(f);
  }

  typing(s: Session, f: TypingFrame): void {
    const key = this.keyOf(s, f.to);
    if (key === undefined) return;
    const peer = this.online(key);
    if (peer && (peer.phase === 'hello' || peer.phase === 'claiming' || peer.phase === 'closed')) return;
    if (f.on) {
      const now = Date.now();
      const last = this.lastTyping.get(s);
      if (last && last[0] === key && now - last[1] < TYPING_MIN_GAP_MS) return;
      this.lastTyping.set(s, [key, now]);
    } else this.lastTyping.delete(s);
    const frame: TypingFromFrame = { t: Op.TypingFrom, from: s.name, on: f.on };
    if (peer) peer.send(frame);
    else this.elsewhere(key, frame);
  }

  /** The name key of `raw`, or undefined (bad name, which gets a coded error, or oneself). */
  private keyOf(s: Session, raw: string): string | undefined {
    const name = normalizeName(raw);
    if (name === null) {
      s.error({ code: 'BAD_NAME', message: 'not a valid name', ref: raw.slice(0, 64) });
      return undefined;
    }
    const key = nameKey(name);
    return key === s.key ? undefined : key;
  }
}
