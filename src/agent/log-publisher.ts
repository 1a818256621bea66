// `service logs` on the worker side: while a session is up, the agent listens for the managers' log
// subscriptions (ListenSubscriptions) and answers each with one PublishLogs stream carrying the
// requested tail of the tasks' in-memory logs and, when following, every line printed afterwards.
// Only tasks this agent runs (its runner holds their log) are published; others are skipped. A
// following subscription grows: the managers send it again naming tasks that started since, and
// those tasks' kept lines follow on the same stream.
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import type { PublishLogsMessage, PublishLogsResponse, SubscriptionMessage } from "../proto/shoal/v1/dispatcher.js";
import { LogStream, type LogLine } from "../proto/shoal/v1/objects.js";
import { MAX_LOG_LINES_PER_MESSAGE } from "../state/limits.js";
import type { SessionLink } from "./session.js";
import { LineSplitter, type TaskLog, type TaskLogLine } from "./task-log.js";

const REOPEN_MIN_MS = 50;
const REOPEN_MAX_MS = 2_000;
/** Subscriptions this agent serves at once (the managers bound theirs too); more are ignored. */
export const MAX_AGENT_SUBSCRIPTIONS = 64;
/** Bytes a following subscription may have queued on its stream before lines are dropped. */
export const MAX_QUEUED_PUBLISH_BYTES = 4 * 1024 * 1024;

export interface LogPublisherOptions {
  /** The kept log of a task this agent runs or ran (undefined: not ours). */
  taskLog: (taskId: string) => TaskLog | undefined;
  clock: Clock;
  logger: Logger;
}

interface Active {
  stop(): void;
  /** The subscription grew (following): publish the tasks it did not name before. */
  add(taskIds: readonly string[]): void;
}

function toLine(taskId: string, line: TaskLogLine): LogLine {
  return {
    taskId,
    timestamp: new Date(line.atMs),
    stream: line.stream === "stdout" ? LogStream.LOG_STREAM_STDOUT : LogStream.LOG_STREAM_STDERR,
    data: line.data,
    slot: 0,
    node: "",
  };
}

export class LogPublisher {
  private link: SessionLink | undefined;
  private stream: grpc.ClientReadableStream<SubscriptionMessage> | undefined;
  private readonly active = new Map<string, Active>();
  /** Lines dropped because a following stream's queue was full (diagnostics). */
  dropped = 0;

  constructor(private readonly opts: LogPublisherOptions) {}

  get activeCount(): number {
    return this.active.size;
  }

  connected(link: SessionLink): void {
    this.link = link;
    void this.loop(link);
  }

  disconnected(): void {
    this.link = undefined;
    this.stream?.cancel();
    for (const a of [...this.active.values()]) a.stop();
    this.active.clear();
  }

  private async loop(link: SessionLink): Promise<void> {
    let delayMs = REOPEN_MIN_MS;
    while (this.link === link) {
      await this.listenOnce(link).catch(() => undefined);
      if (this.link !== link) return;
      await this.opts.clock.sleep(delayMs);
      delayMs = Math.min(REOPEN_MAX_MS, delayMs * 2);
    }
  }

  private listenOnce(link: SessionLink): Promise<void> {
    return new Promise((resolve) => {
      const stream = link.dispatcher.listenSubscriptions({ sessionId: link.sessionId });
      this.stream = stream;
      let settled = false;
      const finish = (): void => {
        if (settled) return;
        settled = true;
        if (this.stream === stream) this.stream = undefined;
        stream.cancel();
        resolve();
      };
      stream.on("data", (message: SubscriptionMessage) => {
        if (this.link !== link) return;
        if (message.close) {
          this.active.get(message.id)?.stop();
          return;
        }
        const known = this.active.get(message.id);
        if (known !== undefined) {
          if (message.follow) known.add(message.taskIds);
          return;
        }
        if (this.active.size >= MAX_AGENT_SUBSCRIPTIONS) {
          this.opts.logger.warn({ subscriptionId: message.id }, "too many log subscriptions at once; ignoring one");
          return;
        }
        this.publish(link, message);
      });
      stream.on("error", (err: grpc.ServiceError) => {
        this.opts.logger.debug({ code: err.code, message: err.details }, "log subscriptions stream ended");
        finish();
      });
      stream.on("end", finish);
    });
  }

  private publish(link: SessionLink, sub: SubscriptionMessage): void {
    const call: grpc.ClientWritableStream<PublishLogsMessage> = link.dispatcher.publishLogs((err: grpc.ServiceError | null, _res?: PublishLogsResponse) => {
      if (err) this.opts.logger.debug({ subscriptionId: sub.id, code: err.code, message: err.details }, "log publish stream ended");
      stop();
    });
    const unfollow: (() => void)[] = [];
    const published = new Set<string>();
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      for (const u of unfollow) u();
      if (this.active.get(sub.id) === active) this.active.delete(sub.id);
      call.end();
    };
    const send = (lines: LogLine[], close = false): void => {
      for (let i = 0; i < lines.length || (i === 0 && close); i += MAX_LOG_LINES_PER_MESSAGE) {
        const batch = lines.slice(i, i + MAX_LOG_LINES_PER_MESSAGE);
        const last = i + MAX_LOG_LINES_PER_MESSAGE >= lines.length;
        call.write({ sessionId: link.sessionId, subscriptionId: sub.id, lines: batch, close: close && last });
      }
    };
    /** The tail of each task not published yet (that this agent holds the log of), then, when following, its new lines. */
    const add = (taskIds: readonly string[], tail: number, close: boolean): void => {
      if (stopped) return;
      const past: { taskId: string; line: TaskLogLine }[] = [];
      for (const taskId of new Set(taskIds)) {
        if (published.has(taskId)) continue;
        const log = this.opts.taskLog(taskId);
        if (log === undefined) continue;
        published.add(taskId);
        for (const line of log.lines(tail)) past.push({ taskId, line });
        if (sub.follow) unfollow.push(this.follow(log, taskId, call, () => stopped, send));
      }
      past.sort((a, b) => a.line.atMs - b.line.atMs);
      send(
        past.map((p) => toLine(p.taskId, p.line)),
        close,
      );
    };
    // A following subscription grows: a task that started here since comes with all its kept lines.
    const active: Active = { stop, add: (taskIds) => add(taskIds, -1, false) };
    this.active.set(sub.id, active);
    add(sub.taskIds, sub.tail, !sub.follow);
    if (!sub.follow) stop();
  }

  private follow(log: TaskLog, taskId: string, call: grpc.ClientWritableStream<PublishLogsMessage>, stopped: () => boolean, send: (lines: LogLine[]) => void): () => void {
    const splitters = { stdout: new LineSplitter("stdout"), stderr: new LineSplitter("stderr") };
    return log.follow((chunk) => {
      if (stopped()) return;
      const out: TaskLogLine[] = [];
      splitters[chunk.stream].push(chunk.data, chunk.atMs, out);
      if (out.length === 0) return;
      if (call.writableLength > MAX_QUEUED_PUBLISH_BYTES) {
        this.dropped += out.length;
        return;
      }
      send(out.map((l) => toLine(taskId, l)));
    });
  }
}
