// `shoal service logs NAME [--follow] [--tail N] [--timestamps]`: the service's task output, read
// through the manager (which gets it from the nodes' agents). Each line is prefixed with
// `name.slot@node |` as `docker service logs` does; stdout lines go to stdout, stderr lines to
// stderr; control characters other than tab are escaped so a task cannot drive the terminal.
// With --follow a leader change does not end the command: it subscribes again (through the local
// daemon, which forwards to the new leader) and prints only the lines it had not printed.
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { isShoalError, ShoalError } from "../../base/errors.js";
import { escapeUnsafeChars } from "../../base/text.js";
import { LogStream, type LogLine } from "../../proto/shoal/v1/objects.js";
import type { CommandContext } from "../context.js";
import { resolveService } from "../resolve.js";

/** `--tail all` (the default) or a number of lines. */
export function parseTail(text: string): number {
  if (text === "all") return -1;
  if (!/^[0-9]{1,6}$/.test(text)) throw new ShoalError("INVALID_ARGUMENT", `--tail takes a number of lines or "all", not "${text}"`);
  return Number(text);
}

/** One line as printed (with its newline). */
export function formatLogLine(line: LogLine, serviceName: string, options: { timestamps: boolean }): string {
  const text = Buffer.from(line.data).toString("utf8").split("\t").map(escapeUnsafeChars).join("\t");
  const prefix = `${escapeUnsafeChars(serviceName)}.${line.slot}@${escapeUnsafeChars(line.node)}`;
  const stamp = options.timestamps && line.timestamp !== undefined ? `${line.timestamp.toISOString()} ` : "";
  return `${stamp}${prefix} | ${text}\n`;
}

/** Codes a following stream ends with when the leader changes or is being elected. */
const LEADER_CHANGE_CODES: ReadonlySet<string> = new Set(["NOT_LEADER", "NO_QUORUM", "UNAVAILABLE"]);
/** A follow gives up when no new subscription has held for this long. */
export const RESUBSCRIBE_BUDGET_MS = 60_000;
const RESUBSCRIBE_DELAY_MS = 500;

/**
 * Which lines were printed, per task (the time of its last printed line and how many lines it printed
 * at that millisecond), so that a subscription made again after a leader change, which replays each
 * task's kept lines, prints only the new ones: for a task none of whose lines were printed, the lines
 * from before the first subscription (which its --tail had left out) are dropped too.
 */
export class PrintedLines {
  private readonly last = new Map<string, { atMs: number; count: number }>();
  private skip = new Map<string, { atMs: number; remaining: number }>();
  private resumed = false;

  constructor(private readonly subscribedAtMs: number) {}

  /** A new subscription starts: its replayed lines up to what was printed are dropped. */
  resume(): void {
    this.resumed = true;
    this.skip = new Map([...this.last].map(([taskId, l]) => [taskId, { atMs: l.atMs, remaining: l.count }]));
  }

  /** Whether `line` is new; if so it counts as printed. */
  admit(line: LogLine): boolean {
    const atMs = line.timestamp?.getTime() ?? 0;
    if (this.resumed && !this.last.has(line.taskId) && atMs < this.subscribedAtMs) return false;
    const skip = this.skip.get(line.taskId);
    if (skip !== undefined) {
      if (atMs < skip.atMs) return false;
      if (atMs === skip.atMs && skip.remaining > 0) {
        skip.remaining--;
        return false;
      }
      this.skip.delete(line.taskId);
    }
    const last = this.last.get(line.taskId);
    if (last !== undefined && last.atMs === atMs) last.count++;
    else this.last.set(line.taskId, { atMs, count: 1 });
    return true;
  }
}

export function registerLogs(service: Command, ctx: CommandContext): void {
  service
    .command("logs")
    .description("print a service's task output (stdout and stderr), read through the manager")
    .argument("<service>", "service name or ID")
    .option("-f, --follow", "keep printing new output until interrupted", false)
    .option("-n, --tail <lines>", 'lines from the end of each task\'s log, or "all"', "all")
    .option("-t, --timestamps", "show when each line was printed", false)
    .action(async (ref: string, opts: { follow: boolean; tail: string; timestamps: boolean }) => {
      const tail = parseTail(opts.tail);
      const daemon = ctx.daemon();
      const found = await resolveService(daemon, ref);
      const name = found.spec?.name ?? found.id;
      const printed = new PrintedLines(Date.now());
      let failingSince: number | undefined;
      for (let resumed = false; ; resumed = true) {
        let received = false;
        const stream = daemon.serviceLogs({ serviceId: found.id, follow: opts.follow, tail: resumed ? -1 : tail }, (lines) => {
          received = true;
          for (const line of lines) {
            if (!printed.admit(line)) continue;
            const text = formatLogLine(line, name, { timestamps: opts.timestamps });
            if (line.stream === LogStream.LOG_STREAM_STDERR) ctx.io.stderr(text);
            else ctx.io.stdout(text);
          }
        });
        try {
          await stream.done;
          return;
        } catch (err) {
          if (!opts.follow || !isShoalError(err) || !LEADER_CHANGE_CODES.has(err.code)) throw err;
          if (received) failingSince = undefined;
          failingSince ??= Date.now();
          if (Date.now() - failingSince > RESUBSCRIBE_BUDGET_MS) throw err;
        }
        printed.resume();
        await sleep(RESUBSCRIBE_DELAY_MS);
      }
    });
}
