/**
 * The recipient's two loops, decoupled so that playback never holds the file back and the file never waits
 * for playback:
 *
 * - `storeAll` writes every piece at its offset into the file store as it arrives. The SDK grants the sender
 *   credit as pieces are taken, so the transfer runs at the link's speed and memory holds one window at most.
 * - `feedPlayer` reads from the store what MediaSource needs, in its order: the bytes in file order for
 *   fragmented MP4, WebM and MP3, or a fragmented re-mux of a regular MP4 (index first or last) made here
 *   from what has arrived. Each read waits for its bytes; each push waits while the buffer ahead is full.
 */
import type { Piece } from '../sdk/streams.ts';
import { sliceSource, StoreClosed, type FileStore } from './file-store.ts';
import { remuxMp4 } from './mp4.ts';
import type { Player } from './player.ts';

/**
 * Most bytes read from the store per step. The re-mux reads whole slices, each waiting for all its bytes, so
 * a slice is kept small enough to arrive soon on a slow link.
 */
const READ_BYTES = 512 * 1024;
const REMUX_READ_BYTES = 64 * 1024;
/** Bytes handed to the disk worker and not yet written. */
const MAX_INFLIGHT_WRITE_BYTES = 4 * 1024 * 1024;

export interface StoreOptions {
  /** Bytes per second to take at most (the page's test knob for a slow viewer); 0 or undefined: no limit. */
  rate?: number;
  /** Called when the pieces stop being wanted (the card was settled). */
  stopped?: () => boolean;
}

/** Writes the stream into the store; resolves with the whole file once every byte is written. */
export async function storeAll(pieces: AsyncIterable<Piece>, store: FileStore, type: string, opts: StoreOptions = {}): Promise<Blob> {
  const started = performance.now();
  let taken = 0;
  // Writes are pipelined (the worker runs them in order) up to a bound, so the link never waits for a disk
  // round trip per piece, and a disk slower than the link holds back the credit instead of growing memory.
  const inflight: { done: Promise<void>; bytes: number }[] = [];
  let inflightBytes = 0;
  for await (const { offset, bytes } of pieces) {
    if (opts.stopped?.()) throw new StoreClosed('stopped');
    if (opts.rate) {
      taken += bytes.byteLength;
      const wait = started + (taken / opts.rate) * 1000 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const done = store.write(offset, bytes);
    done.catch(() => undefined); // awaited below, in order
    inflight.push({ done, bytes: bytes.byteLength });
    inflightBytes += bytes.byteLength;
    while (inflightBytes > MAX_INFLIGHT_WRITE_BYTES) {
      const first = inflight.shift()!;
      await first.done;
      inflightBytes -= first.bytes;
    }
  }
  for (const w of inflight) await w.done;
  if (store.held !== store.size) throw new StoreClosed(`the stream ended with ${store.held} of ${store.size} bytes`);
  return store.complete(type);
}

/**
 * Feeds the player from the store until the file is played through or cannot be, then hands it the whole
 * file. `container` is the offer's; a regular MP4 (`mp4`) is re-muxed and the player must have been made for
 * `fmp4`. Never rejects: a failure to stream becomes whole-file playback.
 */
export async function feedPlayer(player: Player, store: FileStore, container: string, whole: Promise<Blob>): Promise<void> {
  try {
    if (player.mode === 'mse') {
      if (container === 'mp4') {
        for await (const segment of remuxMp4(sliceSource(store), { readBytes: REMUX_READ_BYTES, segmentSeconds: 1, segmentBytes: 2 * 1024 * 1024 })) {
          if (player.mode !== 'mse') break;
          await player.push(segment);
        }
      } else {
        for (let pos = 0; pos < store.size && player.mode === 'mse';) {
          const bytes = await store.readSome(pos, READ_BYTES);
          pos += bytes.byteLength;
          await player.push(bytes);
        }
      }
    }
  } catch (err) {
    if (err instanceof StoreClosed) return; // cancelled or failed: the card says why
    console.warn('streaming playback stopped', err);
    player.giveUpStreaming('the file could not be prepared for playing while it arrives');
  }
  try {
    await player.end(await whole);
  } catch {
    // The transfer failed; the card reports it.
  }
}
