/**
 * Hand-reading and hand-patching of the few frames the load generators handle per message, so that a generator
 * costs less than the server it drives: the opcode of a frame without decoding it, a message frame's tag and
 * text, and fixed-width ASCII digits patched into a pre-encoded `send` template.
 */
/** Writes `n` as `width` base-`radix` ASCII digits ending before `end`. */
export function writeDigits(b: Buffer, end: number, width: number, n: number, radix: number): void {
  for (let i = 1; i <= width; i++) {
    const d = n % radix;
    b[end - i] = d < 10 ? 48 + d : 87 + d;
    n = Math.floor(n / radix);
  }
}

/** The opcode of a `{t: op, ...}` frame without decoding it: after a fixmap or map16 header and the key `t`. */
export function peekOp(b: Buffer): number {
  const at = b[0]! >= 0x80 && b[0]! <= 0x8f ? 1 : b[0] === 0xde ? 3 : -1;
  return at > 0 && b[at] === 0xa1 && b[at + 1] === 0x74 ? b[at + 2]! : -1;
}

/**
 * Reads `tag` (an unsigned integer) and the bytes of `text` out of a flat msgpack map of a message frame, or
 * returns false on anything this small reader does not know (the caller then counts it as unreadable).
 */
export function readMessage(b: Buffer, out: { tag: number; textAt: number; textLen: number }): boolean {
  let p = 0;
  let n: number;
  const h = b[p++]!;
  if (h >= 0x80 && h <= 0x8f) n = h & 0x0f;
  else if (h === 0xde) { n = b.readUInt16BE(p); p += 2; } else return false;
  out.tag = -1;
  out.textAt = -1;
  for (let i = 0; i < n; i++) {
    const kh = b[p++]!;
    if (kh < 0xa0 || kh > 0xbf) return false;
    const kl = kh & 0x1f;
    const k0 = b[p]!;
    const isTag = kl === 3 && k0 === 0x74 && b[p + 1] === 0x61 && b[p + 2] === 0x67;
    const isText = kl === 4 && k0 === 0x74 && b[p + 1] === 0x65 && b[p + 2] === 0x78 && b[p + 3] === 0x74;
    p += kl;
    const v = b[p++]!;
    let num = -1;
    let strLen = -1;
    if (v <= 0x7f) num = v;
    else if (v >= 0xa0 && v <= 0xbf) strLen = v & 0x1f;
    else if (v === 0xd9) strLen = b[p++]!;
    else if (v === 0xda) { strLen = b.readUInt16BE(p); p += 2; } else if (v === 0xcc) num = b[p++]!;
    else if (v === 0xcd) { num = b.readUInt16BE(p); p += 2; } else if (v === 0xce) { num = b.readUInt32BE(p); p += 4; } else if (v === 0xcf) { num = Number(b.readBigUInt64BE(p)); p += 8; } else if (v === 0xcb) p += 8;
    else if (v === 0xc0 || v === 0xc2 || v === 0xc3 || v >= 0xe0) { /* nil, bool, negative fixint */ } else return false;
    if (strLen >= 0) {
      if (isText) { out.textAt = p; out.textLen = strLen; }
      p += strLen;
    } else if (isTag) out.tag = num;
  }
  return out.textAt >= 0;
}
