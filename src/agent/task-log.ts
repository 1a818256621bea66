// A task's stdout and stderr, kept in memory in a bounded ring (the newest bytes win), for
// `service logs`. Nothing here is written to disk or to the agent's own log. Readers get lines
// (split at newlines, long ones cut at MAX_LOG_LINE_BYTES), each with the time its bytes arrived;
// followers are called with every chunk appended after they subscribed.
import { MAX_LOG_LINE_BYTES } from "../state/limits.js";

export const DEFAULT_TASK_LOG_BYTES = 256 * 1024;

export type LogStreamName = "stdout" | "stderr";

export interface LogChunk {
  stream: LogStreamName;
  data: Buffer;
  /** When the bytes arrived (ms since the epoch, from the injected clock). */
  atMs: number;
}

export interface TaskLogLine {
  stream: LogStreamName;
  data: Buffer;
  atMs: number;
}

/** Cuts one stream's chunks into lines; the unfinished last line waits for the next chunk. */
export class LineSplitter {
  private partial: Buffer = Buffer.alloc(0);
  private partialAtMs = 0;

  constructor(private readonly stream: LogStreamName) {}

  push(data: Buffer, atMs: number, out: TaskLogLine[]): void {
    let buf = this.partial.length > 0 ? Buffer.concat([this.partial, data]) : data;
    const at = this.partial.length > 0 ? this.partialAtMs : atMs;
    let lineAt = at;
    for (;;) {
      const nl = buf.indexOf(0x0a);
      if (nl < 0) break;
      this.emit(buf.subarray(0, nl), lineAt, out);
      buf = buf.subarray(nl + 1);
      lineAt = atMs;
    }
    while (buf.length > MAX_LOG_LINE_BYTES) {
      this.emit(buf.subarray(0, MAX_LOG_LINE_BYTES), lineAt, out);
      buf = buf.subarray(MAX_LOG_LINE_BYTES);
      lineAt = atMs;
    }
    this.partial = Buffer.from(buf);
    this.partialAtMs = lineAt;
  }

  /** The unfinished line, if any, as a line of its own. */
  flush(out: TaskLogLine[]): void {
    if (this.partial.length > 0) out.push({ stream: this.stream, data: this.partial, atMs: this.partialAtMs });
    this.partial = Buffer.alloc(0);
  }

  private emit(line: Buffer, atMs: number, out: TaskLogLine[]): void {
    for (let i = 0; i === 0 || i < line.length; i += MAX_LOG_LINE_BYTES) {
      out.push({ stream: this.stream, data: Buffer.from(line.subarray(i, i + MAX_LOG_LINE_BYTES)), atMs });
    }
  }
}

export class TaskLog {
  private readonly chunks: LogChunk[] = [];
  private bytes = 0;
  private readonly followers = new Set<(chunk: LogChunk) => void>();
  /** Bytes dropped from the front so far. */
  dropped = 0;

  constructor(
    private readonly maxBytes: number = DEFAULT_TASK_LOG_BYTES,
    private readonly nowMs: () => number = () => 0,
  ) {}

  append(stream: LogStreamName, data: Buffer): void {
    const atMs = this.nowMs();
    const kept = data.length > this.maxBytes ? data.subarray(data.length - this.maxBytes) : data;
    this.dropped += data.length - kept.length;
    const chunk: LogChunk = { stream, data: Buffer.from(kept), atMs };
    this.chunks.push(chunk);
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
    for (const follower of [...this.followers]) follower({ stream, data: Buffer.from(data), atMs });
  }

  /** The kept output, oldest first. */
  read(stream?: LogStreamName): Buffer {
    return Buffer.concat(this.chunks.filter((c) => stream === undefined || c.stream === stream).map((c) => c.data));
  }

  /** The kept output as lines, oldest first; `tail` >= 0 keeps only the last `tail` lines. */
  lines(tail = -1): TaskLogLine[] {
    const out: TaskLogLine[] = [];
    const splitters = { stdout: new LineSplitter("stdout"), stderr: new LineSplitter("stderr") };
    for (const chunk of this.chunks) splitters[chunk.stream].push(chunk.data, chunk.atMs, out);
    splitters.stdout.flush(out);
    splitters.stderr.flush(out);
    out.sort((a, b) => a.atMs - b.atMs);
    return tail >= 0 ? out.slice(Math.max(0, out.length - tail)) : out;
  }

  /** Calls `follower` with every chunk appended from now on; returns the unsubscribe function. */
  follow(follower: (chunk: LogChunk) => void): () => void {
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }

  get followerCount(): number {
    return this.followers.size;
  }

  get sizeBytes(): number {
    return this.bytes;
  }
}
