import { describe, expect, it } from 'vitest';
import { prepare } from '../../client/media/prepare.ts';

const MiB = 1024 * 1024;

/** An ISO BMFF box: 32-bit size, type, body. */
function box(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + body.byteLength);
  new DataView(out.buffer).setUint32(0, out.byteLength);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  return out;
}

/** A movie header (version 0) with a timescale of 1000 and no tracks. */
function mvhd(): Uint8Array {
  const body = new Uint8Array(100);
  const v = new DataView(body.buffer);
  v.setUint32(12, 1000);
  v.setUint32(20, 0x00010000);
  v.setUint16(24, 0x0100);
  v.setUint32(96, 1);
  return box('mvhd', body);
}

const ftyp = box('ftyp', new Uint8Array([0x69, 0x73, 0x6f, 0x6d, 0, 0, 2, 0, 0x69, 0x73, 0x6f, 0x6d, 0x6d, 0x70, 0x34, 0x31]));

/** A Blob that records every byte range read from it. */
function counted(parts: Uint8Array[]): { blob: Blob; reads: [number, number][] } {
  const real = new Blob(parts as Uint8Array<ArrayBuffer>[]);
  const reads: [number, number][] = [];
  // prepare() uses only size, type and slice(): a plain object stands in for the File a page would pass.
  const blob = {
    size: real.size,
    type: '',
    slice: (a: number, b: number) => {
      reads.push([a, Math.min(b, real.size)]);
      return real.slice(a, b);
    },
  } as unknown as Blob;
  return { blob, reads };
}

/** Bytes read more than once, ignoring headers of up to 64 bytes (the sniff and the box headers). */
function reReadBytes(reads: [number, number][]): number {
  const big = reads.filter(([a, b]) => b - a > 64).sort((x, y) => x[0] - y[0]);
  let again = 0;
  let reach = 0;
  for (const [a, b] of big) {
    if (a < reach) again += Math.min(b, reach) - a;
    reach = Math.max(reach, b);
  }
  return again;
}

describe('preparation', () => {
  it('reads the head and the index of a large MP4 once, never its media data, and reports progress to the end', async () => {
    const mdat = box('mdat', new Uint8Array(48 * MiB));
    const moov = box('moov', new Uint8Array([...mvhd(), ...box('free', new Uint8Array(3 * MiB))]));
    const { blob, reads } = counted([ftyp, mdat, moov]);
    const seen: number[] = [];
    await prepare(blob, { onProgress: (at, size) => { expect(size).toBe(blob.size); seen.push(at); } });
    const total = reads.reduce((n, [a, b]) => n + (b - a), 0);
    expect(total).toBeLessThan(5 * MiB);
    expect(reReadBytes(reads)).toBe(0);
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.at(-1)).toBe(blob.size);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
  });

  it('stops at the signal: the read in progress is the last, and prepare rejects with the reason', async () => {
    const moov = box('moov', box('free', new Uint8Array(32 * MiB)));
    const { blob, reads } = counted([ftyp, moov]);
    const stop = new AbortController();
    let calls = 0;
    const done = prepare(blob, {
      readBytes: 256 * 1024,
      signal: stop.signal,
      onProgress: () => { if (++calls === 3) stop.abort(new Error('cancelled by sender')); },
    });
    await expect(done).rejects.toThrow('cancelled by sender');
    expect(calls).toBe(3);
    expect(reads.length).toBe(3);
    const total = reads.reduce((n, [a, b]) => n + (b - a), 0);
    expect(total).toBeLessThan(MiB);
  });
});
