// ─── Registration point for `shoal daemon` ──────────────────────────────────────────────────────
// The engineer who writes src/daemon fills this function (import from "../daemon/..." is allowed:
// daemon is below cli). Until then `shoal daemon` is an unknown command (exit 2).
//
// Notes for the implementer:
// - `--socket PATH` and `--data-dir DIR` are program-level options (see program.ts), parsed wherever
//   they appear on the line, so `shoal daemon --data-dir X` puts X in the program's options: read
//   them with `cmd.optsWithGlobals()` rather than declaring them again on the subcommand.
// - The action may return a promise that settles when the daemon stops; runCli only sets the exit
//   code and never calls process.exit, so a long-running daemon keeps the process alive.
// - Throw ShoalError for startup failures: runCli prints describeError() and the exit code of
//   exit-codes.ts.
import type { Command } from "commander";

export function registerDaemonCommand(program: Command): void {
  void program;
}
