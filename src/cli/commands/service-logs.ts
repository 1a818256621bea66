// `shoal service logs NAME [--follow] [--tail N] [--timestamps]`: the service's task output, read
// through the manager (which gets it from the nodes' agents). Each line is prefixed with
// `name.slot@node |` as `docker service logs` does; stdout lines go to stdout, stderr lines to
// stderr; control characters other than tab are escaped so a task cannot drive the terminal.
import type { Command } from "commander";
import { ShoalError } from "../../base/errors.js";
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
      const stream = daemon.serviceLogs({ serviceId: found.id, follow: opts.follow, tail }, (lines) => {
        for (const line of lines) {
          const text = formatLogLine(line, name, { timestamps: opts.timestamps });
          if (line.stream === LogStream.LOG_STREAM_STDERR) ctx.io.stderr(text);
          else ctx.io.stdout(text);
        }
      });
      await stream.done;
    });
}
