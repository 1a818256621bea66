// A task's stdout and stderr, kept in memory in a bounded ring (the newest bytes win), for
// `service logs`. Nothing here is written to disk or to the agent's own log.

export const DEFAULT_TASK_LOG_BYTES = 256 * 1024;

export interface LogChunk {
  stream: "stdout" | "stderr";
  data: Buffer;
}

export class TaskLog {
  private readonly chunks: LogChunk[] = [];
  private bytes = 0;
  /** Bytes dropped from the front so far. */
  dropped = 0;

  constructor(private readonly maxBytes: number = DEFAULT_TASK_LOG_BYTES) {}

  append(stream: "stdout" | "stderr", data: Buffer): void {
    const kept = data.length > this.maxBytes ? data.subarray(data.length - this.maxBytes) : data;
    this.dropped += data.length - kept.length;
    this.chunks.push({ stream, data: Buffer.from(kept) });
    this.bytes += kept.length;
    while (this.bytes > this.maxBytes) {
      const first = this.chunks[0]!;
      const excess = this.bytes - this.maxBytes;
      if (first.data.length <= excess) {
        this.chunks.shift();
        this.bytes -= first.data.length;
        this.dropped += first.data.length;
      } else {
        first.data = first.data.subarray(excess);
        this.bytes -= excess;
        this.dropped += excess;
      }
    }
  }

  /** The kept output, oldest first. */
  read(stream?: "stdout" | "stderr"): Buffer {
    return Buffer.concat(this.chunks.filter((c) => stream === undefined || c.stream === stream).map((c) => c.data));
  }

  get sizeBytes(): number {
    return this.bytes;
  }
}
