// `shoal events [--since D|TIME] [--until D|TIME] [--filter type=T]... [--format json]`: what changes
// in the cluster, as `docker events` prints it, from the local manager's own event history (so the
// stream goes on across leader changes). A line is `TIME TYPE ACTION ID (name=NAME, k=v, ...)`;
// `--format json` prints one JSON object per line. Ctrl-C ends it cleanly (exit 0); a stream that
// breaks (the daemon went away) exits non-zero with a sentence.
import { Option, type Command } from "commander";
import { ShoalError } from "../../base/errors.js";
import { escapeUnsafeChars } from "../../base/text.js";
import type { ClusterEvent } from "../../proto/shoal/v1/control.js";
import { EVENT_TYPES } from "../../state/index.js";
import { collect, type CommandContext } from "../context.js";
import { parseDurationSeconds } from "../duration.js";

/** `--since` / `--until`: a duration before now ("10m", "1h30m") or an RFC 3339 time. */
export function parseEventTime(text: string, flag: string, nowMs: number): Date {
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isFinite(ms)) throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is not a valid time: use e.g. 2026-01-31T12:00:00Z, or a duration such as 10m`);
    return new Date(ms);
  }
  return new Date(nowMs - parseDurationSeconds(text, flag) * 1000);
}

/** `--filter type=T` (repeatable) → the types asked for. */
export function parseEventFilters(filters: readonly string[]): string[] {
  const types: string[] = [];
  for (const f of filters) {
    const eq = f.indexOf("=");
    const key = eq < 0 ? f : f.slice(0, eq);
    const value = eq < 0 ? "" : f.slice(eq + 1);
    if (key !== "type") throw new ShoalError("INVALID_ARGUMENT", `--filter "${f}" is not supported: use --filter type=${EVENT_TYPES.join("|")}`);
    if (!(EVENT_TYPES as readonly string[]).includes(value)) {
      throw new ShoalError("INVALID_ARGUMENT", `--filter type="${value}" is not an event type: use one of ${EVENT_TYPES.join(", ")}`);
    }
    if (!types.includes(value)) types.push(value);
  }
  return types;
}

/** One human line, with its newline: `docker events` layout, attributes sorted, controls escaped. */
export function formatEventLine(e: ClusterEvent): string {
  const attrs = [`name=${e.name}`, ...Object.keys(e.attributes).sort().map((k) => `${k}=${e.attributes[k]}`)];
  const id = e.id === "" ? "-" : e.id;
  return escapeUnsafeChars(`${e.time?.toISOString() ?? "-"} ${e.type} ${e.action} ${id} (${attrs.join(", ")})`) + "\n";
}

/** One JSON line. */
export function eventJson(e: ClusterEvent): string {
  return JSON.stringify({ time: e.time?.toISOString() ?? null, type: e.type, action: e.action, id: e.id, name: e.name, attributes: e.attributes, index: Number(e.index) }) + "\n";
}

export function registerEventsCommand(program: Command, ctx: CommandContext): void {
  program
    .command("events")
    .description("print what changes in the cluster (nodes, services, tasks, secrets, the CA) as it happens, from this manager")
    .option("--since <when>", "first replay the kept events since then: a duration before now (10m, 1h) or a time (2026-01-31T12:00:00Z)")
    .option("--until <when>", "stop at that time: a duration before now or a time; in the past, print only kept events and end")
    .option("-f, --filter <type=T>", `only events of that type (${EVENT_TYPES.join(", ")}); repeatable`, collect, [] as string[])
    .addOption(new Option("--format <format>", "output format").choices(["table", "json"]).default("table"))
    .action(async (opts: { since?: string; until?: string; filter: string[]; format: "table" | "json" }) => {
      const nowMs = Date.now();
      const types = parseEventFilters(opts.filter);
      const since = opts.since === undefined ? undefined : parseEventTime(opts.since, "--since", nowMs);
      const until = opts.until === undefined ? undefined : parseEventTime(opts.until, "--until", nowMs);
      if (since !== undefined && until !== undefined && until.getTime() < since.getTime()) {
        throw new ShoalError("INVALID_ARGUMENT", "--until is before --since: nothing would be printed");
      }
      const untilMs = until?.getTime();
      const past = untilMs !== undefined && untilMs <= nowMs;
      const print = opts.format === "json" ? eventJson : formatEventLine;
      const stream = ctx.daemon().events({ since: since ?? (past ? new Date(0) : undefined), types, noFollow: past }, (events) => {
        for (const e of events) {
          if (untilMs !== undefined && (e.time?.getTime() ?? 0) > untilMs) {
            stream.cancel();
            return;
          }
          ctx.io.stdout(print(e));
        }
      });
      const stopInterrupt = ctx.io.onInterrupt?.(() => stream.cancel());
      const timer = untilMs !== undefined && !past ? setTimeout(() => stream.cancel(), untilMs - nowMs) : undefined;
      try {
        await stream.done;
      } finally {
        stopInterrupt?.();
        if (timer !== undefined) clearTimeout(timer);
      }
    });
}
