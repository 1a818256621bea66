// What every command handler gets: the process's streams and environment, and a lazily opened
// connection to the local daemon (so `--help` and usage errors never touch the socket).
import { Option } from "commander";
import type { DaemonClient } from "./daemon-client.js";
import type { InputStream } from "./input.js";

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  stdin: InputStream;
  env: Record<string, string | undefined>;
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
