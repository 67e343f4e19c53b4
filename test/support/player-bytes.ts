/**
 * What the recipient's player is fed for a prepared file, in order: the file's bytes for fragmented MP4,
 * WebM and MP3, or the recipient-side fragmented re-mux of a regular MP4 (client/media/receive.ts does the
 * same from its file store). Pieces are at most `max` bytes. Shared by the Node and in-page media tests.
 */
import { remuxMp4 } from '../../client/media/mp4.ts';
import type { PreparedFile } from '../../client/media/prepare.ts';

export const REMUX = { readBytes: 512 * 1024, segmentSeconds: 1, segmentBytes: 2 * 1024 * 1024 } as const;

export async function* playerBytes(file: Blob, p: PreparedFile, max: number, readBytes: number = REMUX.readBytes): AsyncGenerator<Uint8Array, void, undefined> {
  if (p.container === 'mp4') {
    for await (const bytes of remuxMp4(file, { ...REMUX, readBytes })) {
      for (let at = 0; at < bytes.length; at += max) yield bytes.subarray(at, Math.min(bytes.length, at + max));
    }
    return;
  }
  for (let at = 0; at < file.size; at += max) yield new Uint8Array(await file.slice(at, Math.min(file.size, at + max)).arrayBuffer());
}

/** The container the player is made for. */
export function playerContainer(p: PreparedFile): string {
  return p.container === 'mp4' ? 'fmp4' : p.container;
}
