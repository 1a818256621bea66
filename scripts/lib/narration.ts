// The demo's narration: numbered steps, `$ shoal …` excerpts, checks that stop the run when what was
// narrated did not happen. Every line printed is kept, so the demo can prove a secret never reached
// its own output.
import { performance } from "node:perf_hooks";
import type { CliResult, NodeProcess } from "./process-cluster.js";

const startedMs = performance.now();
const printed: string[] = [];

export const elapsed = (): string => `${((performance.now() - startedMs) / 1000).toFixed(1)}s`;

/** Every line printed so far (for the check that no secret reached the output). */
export function printedText(): string {
  return printed.join("\n");
}

export function print(line: string): void {
  printed.push(line);
  console.log(line);
}

export function step(text: string): void {
  print(`\n== [${elapsed()}] ${text}`);
}

export function say(text: string): void {
  print(`   ${text}`);
}

/** Tokens and unlock keys are secrets: never on the demo's output, not even in an excerpt. */
export function redact(text: string): string {
  return text.replace(/SWMTKN-1-[0-9a-z]+-[0-9a-z]+/g, "SWMTKN-1-<redacted>").replace(/SWMKEY-1-[A-Za-z0-9+/]+/g, "SWMKEY-1-<redacted>");
}

export class DemoFailure extends Error {}

export function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new DemoFailure(what);
}

/** Prints `$ shoal <args>` on a node and an excerpt of what it printed. */
export function showCommand(node: NodeProcess, args: string[], result: CliResult, opts: { maxLines?: number; stdinNote?: string } = {}): void {
  const shown = args.map((a) => (a.startsWith("SWMTKN-1-") ? "SWMTKN-1-<redacted>" : /\s/.test(a) ? `'${a}'` : a)).join(" ");
  print(`   ${node.name}$ shoal ${shown}${opts.stdinNote === undefined ? "" : `   (${opts.stdinNote})`}`);
  const text = redact((result.stdout + result.stderr).trimEnd());
  const lines = text === "" ? [] : text.split("\n");
  const maxLines = opts.maxLines ?? 12;
  for (const line of lines.slice(0, maxLines)) print(`     | ${line}`);
  if (lines.length > maxLines) print(`     | ... (${lines.length - maxLines} more lines)`);
  if (result.code !== 0) print(`     (exit code ${result.code})`);
}

export interface RunOptions {
  input?: string;
  maxLines?: number;
  stdinNote?: string;
  expectFail?: boolean;
}

/** Runs the real `shoal` binary on `node`, shows it, and checks its exit code. */
export async function run(node: NodeProcess, args: string[], opts: RunOptions = {}): Promise<CliResult> {
  const result = await node.shoal(args, { input: opts.input });
  showCommand(node, args, result, opts);
  if (opts.expectFail === true) check(result.code !== 0, `\`shoal ${args[0]}\` on ${node.name} should have failed but exited 0`);
  else check(result.code === 0, `\`shoal ${args.join(" ")}\` on ${node.name} failed: ${redact(result.stderr.trim())}`);
  return result;
}
