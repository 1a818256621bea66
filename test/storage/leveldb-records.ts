// Test helper: walks a LevelDB write-ahead log by its 7-byte physical record headers, so tests can
// flip a byte inside a chosen record (LevelDB's log format: 32 KiB blocks, a block tail shorter
// than a header is padding).
export const LOG_BLOCK_BYTES = 32 * 1024;

/** Physical records of a LevelDB log file (header offset, data start, data end), walked by their headers. */
export function physicalRecords(bytes: Buffer): Array<{ at: number; data: number; end: number }> {
  const out: Array<{ at: number; data: number; end: number }> = [];
  let at = 0;
  while (at + 7 <= bytes.length) {
    if (LOG_BLOCK_BYTES - (at % LOG_BLOCK_BYTES) < 7) {
      at += LOG_BLOCK_BYTES - (at % LOG_BLOCK_BYTES);
      continue;
    }
    const length = bytes.readUInt16LE(at + 4);
    out.push({ at, data: at + 7, end: at + 7 + length });
    at += 7 + length;
  }
  return out;
}
