// Snappy decompression (the raw format, as LevelDB compresses table blocks), just enough to read a
// table's index and meta-index blocks at open; data blocks are only checksummed, never inflated.
// Returns undefined for any malformed input instead of throwing, so the caller names the file.

function readVarint32(src: Uint8Array, pos: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let shift = 0; shift <= 28; shift += 7) {
    const byte = src[pos];
    if (byte === undefined) return undefined;
    pos++;
    value |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value: value >>> 0, next: pos };
  }
  return undefined;
}

/** The decompressed bytes, or undefined if `src` is not valid raw snappy within `maxBytes`. */
export function snappyUncompress(src: Uint8Array, maxBytes: number): Buffer | undefined {
  const header = readVarint32(src, 0);
  if (header === undefined || header.value > maxBytes) return undefined;
  const out = Buffer.allocUnsafe(header.value);
  let pos = header.next;
  let outPos = 0;
  while (pos < src.length) {
    const tag = src[pos++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let len = tag >>> 2;
      if (len >= 60) {
        const extra = len - 59;
        if (pos + extra > src.length) return undefined;
        len = 0;
        for (let i = 0; i < extra; i++) len |= src[pos + i]! << (8 * i);
        len = len >>> 0;
        pos += extra;
      }
      len += 1;
      if (pos + len > src.length || outPos + len > out.length) return undefined;
      out.set(src.subarray(pos, pos + len), outPos);
      pos += len;
      outPos += len;
      continue;
    }
    let len: number;
    let offset: number;
    if (kind === 1) {
      if (pos >= src.length) return undefined;
      len = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | src[pos++]!;
    } else {
      const width = kind === 2 ? 2 : 4;
      if (pos + width > src.length) return undefined;
      len = (tag >>> 2) + 1;
      offset = 0;
      for (let i = 0; i < width; i++) offset |= src[pos + i]! << (8 * i);
      offset = offset >>> 0;
      pos += width;
    }
    if (offset === 0 || offset > outPos || outPos + len > out.length) return undefined;
    // Byte by byte: a copy may overlap its own output (offset < len repeats a pattern).
    for (let i = 0; i < len; i++, outPos++) out[outPos] = out[outPos - offset]!;
  }
  return outPos === out.length ? out : undefined;
}
