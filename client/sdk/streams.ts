/**
 * File streams over a ParleyClient: `sendFile` on the sending side, `offer` events with accept/decline and an
 * async iterable of chunks on the receiving side. Flow control is credit based end to end: the recipient grants
 * bytes as its consumer takes them, the sender never sends beyond the grant, so neither the server nor the
 * recipient holds more than the window, whatever the file size or the viewer's speed.
 *
 * A transfer outlives its stream: when a disconnect or a takeover cuts an accepted stream, both sides'
 * objects turn `paused` (the server keeps the transfer resumable for a while, see docs/protocol.md), and once
 * both are back the recipient asks to resume with the byte ranges it has; the same objects go on as a new
 * stream in which the sender sends only the rest. A sender can resume while it has a source it can read again
 * (a Blob or a ranged source): the same object, or after a reload (or in a newer page that took the session
 * over) a copy it kept, through `Streams.resumeOutgoing`; a recipient can resume after a reload with
 * `Streams.resumeIncoming`, naming the ranges it kept on disk.
 */
import { chunkPayload } from '../../shared/chunk.ts';
import { newMessageId } from '../../shared/ids.ts';
import { nameKey } from '../../shared/names.ts';
import { Op, type ServerFrame, type StreamOfferedFrame } from '../../shared/protocol.ts';
import type { ParleyClient } from './client.ts';
import { Emitter } from './emitter.ts';
import { IncomingStream } from './incoming-stream.ts';
import { OutgoingStream } from './outgoing-stream.ts';
import { StreamError, type AcceptOptions, type FileMeta, type FileSource } from './stream-types.ts';

export { IncomingStream } from './incoming-stream.ts';
export { OutgoingStream } from './outgoing-stream.ts';
export { StreamError, type AcceptOptions, type FileMeta, type FileSource, type Pause, type Piece, type Progress, type RangedSource } from './stream-types.ts';

interface StreamsEvents extends Record<string, unknown> {
  offer: IncomingStream;
}

/** What a recipient kept of a cut transfer across a page reload (see `Streams.resumeIncoming`). */
export interface KeptTransfer {
  tid: string;
  from: string;
  meta: FileMeta;
  /** Byte ranges on disk. */
  held: ReadonlyArray<readonly [number, number]>;
  /** Until when (ms since the epoch) the server keeps it resumable, as last heard. */
  until: number;
}

/** What a sender kept of a cut transfer across a page reload or a takeover (see `Streams.resumeOutgoing`). */
export interface KeptSend {
  tid: string;
  /** The recipient. */
  to: string;
  meta: FileMeta;
  /** Until when (ms since the epoch) the server keeps it resumable, as last known. */
  until: number;
}

/** Attaches stream handling to a client. One per client. */
export class Streams extends Emitter<StreamsEvents> {
  private readonly outgoing = new Map<number, OutgoingStream>();
  private readonly pendingOffers = new Map<string, OutgoingStream>();
  private readonly incoming = new Map<number, IncomingStream>();
  /** Cut transfers waiting to go on, by transfer id. */
  private readonly pausedOut = new Map<string, OutgoingStream>();
  private readonly pausedIn = new Map<string, IncomingStream>();
  /** Errors about paused transfers, answered here: a page need not show them (see `handled`). */
  private readonly handledErrors = new WeakSet<object>();
  /** Transfer ids this page gave up lately (a few), whose late errors are nobody's business. */
  private readonly given: string[] = [];
  /** Give-ups made while offline, sent at the next connection. */
  private readonly undelivered: { tid: string; peer: string }[] = [];

  constructor(readonly client: ParleyClient) {
    super();
    client.on('frame', (f) => this.frame(f));
    client.on('chunk', (c) => this.incoming.get(c.header.sid)?.push(c.header.offset, chunkPayload(c.bytes)));
    client.on('error', (e) => {
      if (typeof e.ref === 'string') {
        const p = this.pendingOffers.get(e.ref);
        if (p) {
          this.pendingOffers.delete(e.ref);
          p.fail(new StreamError(e.code, e.message));
          return;
        }
        if (this.given.includes(e.ref)) {
          this.handledErrors.add(e); // a give-up the server had already forgotten: nothing more to do
          return;
        }
        const inc = this.pausedIn.get(e.ref);
        if (!inc) return;
        this.handledErrors.add(e);
        if (e.code === 'TRANSFER_UNKNOWN') {
          this.pausedIn.delete(e.ref);
          inc.fail(new StreamError(e.code, e.message));
        } else {
          inc.notNow(); // asked again when the sender is back (streamResumable) or at the next connection
        }
      } else if (typeof e.ref === 'number') {
        this.outgoing.get(e.ref)?.fail(new StreamError(e.code, e.message));
      }
    });
    client.on('state', ({ to }) => {
      if (to === 'connecting') return;
      if (to === 'open') {
        for (const { tid, peer } of this.undelivered.splice(0)) this.client.write({ t: Op.StreamDrop, tid, peer });
        for (const s of this.pausedIn.values()) s.ask();
        return;
      }
      // A lost connection cuts every stream; the server pauses the accepted ones too (or ends them).
      const cut = new StreamError('DISCONNECTED', 'connection lost');
      for (const s of this.outgoing.values()) this.cutOut(s, cut);
      for (const p of this.pendingOffers.values()) p.fail(cut);
      for (const s of this.incoming.values()) this.cutIn(s, cut);
      this.outgoing.clear();
      this.pendingOffers.clear();
      this.incoming.clear();
    });
  }

  /** Offers a file to an online contact and, once accepted, sends it through the credit window. */
  sendFile(to: string, source: FileSource, meta: FileMeta): OutgoingStream {
    const ref = newMessageId();
    const stream = new OutgoingStream(this, to, meta, ref, source);
    this.pendingOffers.set(ref, stream);
    if (!this.client.write({ t: Op.StreamOffer, ref, to, name: meta.name, size: meta.size, mime: meta.mime, container: meta.container })) {
      this.pendingOffers.delete(ref);
      stream.fail(new StreamError('DISCONNECTED', 'not connected'));
    }
    return stream;
  }

  /**
   * A transfer this page received part of before it was reloaded: paused, asking to resume as soon as the
   * client is connected (and again when the sender comes back). Accept options as for `accept()`.
   */
  resumeIncoming(kept: KeptTransfer, windowBytes = 2 * 1024 * 1024, opts: AcceptOptions = {}): IncomingStream {
    const offer: StreamOfferedFrame = {
      t: Op.StreamOffered, sid: 0, tid: kept.tid, from: kept.from, to: this.client.welcome?.name ?? '', ...kept.meta,
    };
    const s = new IncomingStream(this, offer);
    this.pausedIn.get(kept.tid)?.fail(new StreamError('TRANSFER_UNKNOWN', 'replaced'));
    this.pausedIn.set(kept.tid, s);
    s.restore(kept.held, windowBytes, opts, Math.max(0, kept.until - Date.now()));
    if (this.client.state === 'open') s.ask();
    return s;
  }

  /**
   * A transfer a previous page of this sender (reloaded, or taken over by this one) was sending: paused, going
   * on when the recipient asks to resume, from `source` (which must give the very bytes of the file; a
   * ranged source may read from storage lazily). Register it before the client connects, so that the
   * server's `streamResumed` finds it.
   */
  resumeOutgoing(kept: KeptSend, source: FileSource): OutgoingStream {
    const s = new OutgoingStream(this, kept.to, kept.meta, kept.tid, source);
    this.pausedOut.get(kept.tid)?.fail(new StreamError('TRANSFER_UNKNOWN', 'replaced'));
    this.pausedOut.set(kept.tid, s);
    s.restore(Math.max(0, kept.until - Date.now()));
    return s;
  }

  /**
   * @internal This page lets go of a paused transfer without giving it up (another page of this browser
   * carries it on): forgotten here, the server and the other side are not told.
   */
  letGo(s: OutgoingStream): void {
    if (this.pausedOut.get(s.tid) === s) this.pausedOut.delete(s.tid);
  }

  /** True for an `error` frame about a paused transfer, which the streams have dealt with (the card shows it). */
  handled(e: object): boolean {
    return this.handledErrors.has(e);
  }

  /**
   * @internal A paused transfer given up by this side: the server is told now, or at the next connection when
   * this side is offline (the other side would otherwise wait for it until the transfer expires).
   */
  giveUp(tid: string, peer: string): void {
    this.given.push(tid);
    if (this.given.length > 16) this.given.shift();
    this.pausedIn.delete(tid);
    this.pausedOut.delete(tid);
    if (!this.client.write({ t: Op.StreamDrop, tid, peer })) {
      this.undelivered.push({ tid, peer });
      if (this.undelivered.length > 16) this.undelivered.shift();
    }
  }

  /** @internal */
  forget(sid: number): void {
    this.incoming.delete(sid);
  }

  /** @internal A paused transfer's time ran out. */
  expired(s: OutgoingStream | IncomingStream): void {
    const map: Map<string, OutgoingStream | IncomingStream> = s instanceof OutgoingStream ? this.pausedOut : this.pausedIn;
    if (map.get(s.tid) !== s) return;
    map.delete(s.tid);
    s.fail(new StreamError('TRANSFER_UNKNOWN', 'the transfer waited too long to go on'));
  }

  private cutOut(s: OutgoingStream, why: StreamError, resumeMs?: number): void {
    if (s.wasAccepted && s.resumable) {
      this.pausedOut.set(s.tid, s);
      s.pause(why, resumeMs);
      return;
    }
    // The server paused a transfer this side cannot go on with (a one-pass source): give it up at once.
    if (resumeMs !== undefined) this.giveUp(s.tid, s.to);
    s.fail(why);
  }

  private cutIn(s: IncomingStream, why: StreamError, resumeMs?: number): void {
    if (s.wasAccepted) {
      this.pausedIn.set(s.tid, s);
      s.pause(why, resumeMs);
    } else {
      s.fail(why);
    }
  }

  private get myKey(): string {
    return nameKey(this.client.welcome?.name ?? '');
  }

  private frame(f: ServerFrame): void {
    switch (f.t) {
      case Op.StreamOffered: {
        if (f.ref !== undefined) {
          const p = this.pendingOffers.get(f.ref);
          if (!p) return;
          this.pendingOffers.delete(f.ref);
          p.sid = f.sid;
          this.outgoing.set(f.sid, p);
          return;
        }
        const s = new IncomingStream(this, f);
        this.incoming.set(f.sid, s);
        this.emit('offer', s);
        return;
      }
      case Op.StreamAnswered: {
        const s = this.outgoing.get(f.sid);
        if (!s) return;
        if (!f.accept) {
          this.outgoing.delete(f.sid);
          s.fail(new StreamError('DECLINED', 'the recipient declined'));
          return;
        }
        s.accepted();
        s.pump(this.maxChunk).catch((err: unknown) => s.unreadable(err));
        return;
      }
      case Op.StreamGranted:
        this.outgoing.get(f.sid)?.grant(f.bytes);
        return;
      case Op.StreamEnded: {
        const out = this.outgoing.get(f.sid);
        if (out) {
          this.outgoing.delete(f.sid);
          out.complete(f.bytes);
        }
        const inc = this.incoming.get(f.sid);
        if (inc) {
          this.incoming.delete(f.sid);
          inc.end(f.bytes);
        }
        return;
      }
      case Op.StreamAborted: {
        const err = new StreamError(f.reason, f.message);
        const out = this.outgoing.get(f.sid);
        const inc = this.incoming.get(f.sid);
        this.outgoing.delete(f.sid);
        this.incoming.delete(f.sid);
        if (f.resumeMs !== undefined) {
          if (out) this.cutOut(out, err, f.resumeMs);
          if (inc) this.cutIn(inc, err, f.resumeMs);
        } else {
          out?.fail(err);
          inc?.fail(err);
        }
        return;
      }
      case Op.StreamResumable:
        this.pausedIn.get(f.tid)?.ask();
        return;
      case Op.StreamResumed: {
        if (nameKey(f.from) === this.myKey) {
          const out = this.pausedOut.get(f.tid);
          if (!out || nameKey(out.to) !== nameKey(f.to)) {
            // Not a transfer this page can go on with (e.g. it was reloaded and no longer has the file).
            this.client.write({ t: Op.StreamCancel, sid: f.sid, reason: 'the sender no longer has this file open' });
            return;
          }
          this.pausedOut.delete(f.tid);
          this.outgoing.set(f.sid, out);
          out.resume(f.sid, f.held, this.maxChunk);
          return;
        }
        const inc = this.pausedIn.get(f.tid);
        if (!inc || nameKey(inc.from) !== nameKey(f.from)) {
          this.client.write({ t: Op.StreamCancel, sid: f.sid, reason: 'the recipient no longer wants this file' });
          return;
        }
        this.pausedIn.delete(f.tid);
        this.incoming.set(f.sid, inc);
        inc.resumed(f.sid);
        return;
      }
      case Op.StreamDropped: {
        const err = new StreamError(f.reason, f.reason === 'SENDER_CANCELLED' ? 'the sender gave up' : 'the recipient gave up');
        for (const map of [this.pausedOut, this.pausedIn] as Map<string, OutgoingStream | IncomingStream>[]) {
          const s = map.get(f.tid);
          if (!s) continue;
          map.delete(f.tid);
          s.fail(err);
        }
        return;
      }
      default:
        return;
    }
  }

  private get maxChunk(): number {
    return this.client.welcome?.limits.maxChunkBytes ?? 256 * 1024;
  }
}

