/**
 * Media chunk frames: a fixed 13-byte header and the raw bytes, never msgpack, so the server can check the
 * header and forward the very same buffer without decoding or copying the payload.
 *
 *   byte 0      CHUNK_TAG (0xC1: msgpack's one never-used byte, so no control frame can start with it)
 *   bytes 1-4   stream id, uint32 big-endian (assigned by the server in `streamOffered`)
 *   bytes 5-12  offset of the first payload byte in the file, float64 big-endian (exact up to 2^53)
 *   bytes 13-   payload
 */
export const CHUNK_TAG = 0xc1;
/**
 * Most separate byte ranges ("runs") one stream may be sent in. A chunk continues the current run or begins a
 * new one overlapping no byte sent before (an MP4's index first, then the rest), so each byte travels once.
 */
export const MAX_STREAM_RUNS = 8;
export const CHUNK_HEADER_BYTES = 13;

export interface ChunkHeader { sid: number; offset: number; length: number }

/** Builds a chunk frame around `payload` (one copy, into the frame). */
export function encodeChunk(sid: number, offset: number, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(CHUNK_HEADER_BYTES + payload.byteLength);
  const view = new DataView(frame.buffer);
  frame[0] = CHUNK_TAG;
  view.setUint32(1, sid);
  view.setFloat64(5, offset);
  frame.set(payload, CHUNK_HEADER_BYTES);
  return frame;
}

/** Reads the header of a frame whose first byte is CHUNK_TAG; null when the header is malformed. */
export function readChunkHeader(frame: Uint8Array): ChunkHeader | null {
  if (frame.byteLength < CHUNK_HEADER_BYTES || frame[0] !== CHUNK_TAG) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const sid = view.getUint32(1);
  const offset = view.getFloat64(5);
  if (!Number.isSafeInteger(offset) || offset < 0) return null;
  return { sid, offset, length: frame.byteLength - CHUNK_HEADER_BYTES };
}

/** The payload of a chunk frame, as a view (no copy). */
export function chunkPayload(frame: Uint8Array): Uint8Array {
  return frame.subarray(CHUNK_HEADER_BYTES);
}
