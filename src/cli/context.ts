// What every command handler gets: the process's streams and environment, and a lazily opened
// connection to the local daemon (so `--help` and usage errors never touch the socket).
import { Option } from "commander";
import type { Clock } from "../base/clock.js";
import type { DaemonClient } from "./daemon-client.js";
import type { InputStream } from "./input.js";

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  stdin: InputStream;
  env: Record<string, string | undefined>;
  /** Whether stdout is a terminal: live displays redraw only there (default: not a terminal). */
  stdoutIsTTY?: boolean;
  /** The terminal's width in columns, when known. */
  columns?: () => number | undefined;
  /** Calls `handler` on Ctrl-C (SIGINT) until the returned function is called; a live display stops on it. */
  onInterrupt?: (handler: () => void) => () => void;
  /** Time for ages and the pace of live displays (default: the system clock). */
  clock?: Clock;
}

export interface CommandContext {
  io: CliIo;
  /** The daemon at the socket chosen by `--socket`, `SHOAL_SOCKET` or `--data-dir`. */
  daemon: () => DaemonClient;
}

export type OutputFormat = "table" | "json";

export function printJson(io: CliIo, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + "\n");
}

/** `--format table|json`, which every listing takes (DESIGN.md §5). */
export function formatOption(): Option {
  return new Option("--format <format>", "output format").choices(["table", "json"]).default("table");
}

/** Commander reducer for a repeatable flag: each occurrence appends its value. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
