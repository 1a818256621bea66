// Builds the `shoal` command tree (commander 14) and runs one command line: usage errors exit 2,
// ShoalErrors print one sentence to stderr and exit with the code of their class (exit-codes.ts).
import { Command, CommanderError } from "commander";
import { isShoalError } from "../base/errors.js";
import { registerClusterCommands } from "./commands/cluster.js";
import { registerEventsCommand } from "./commands/events.js";
import { registerRootCaCommand } from "./commands/root-ca.js";
import { registerImageCommands } from "./commands/image.js";
import { registerNodeCommands } from "./commands/node.js";
import { registerRegistryCommands } from "./commands/registry.js";
import { registerSecretCommands } from "./commands/secret.js";
import { registerServiceCommands } from "./commands/service.js";
import type { CliIo, CommandContext } from "./context.js";
import { registerDaemonCommand } from "./daemon-command.js";
import { DaemonClient, resolveSocketPath, type SocketOptions } from "./daemon-client.js";
import { CommandFailed, describeError, EXIT_GENERIC, EXIT_OK, EXIT_USAGE, exitCodeFor } from "./exit-codes.js";

export function buildProgram(ctx: CommandContext): Command {
  const program = new Command("shoal")
    .description("Shoal: a secure-by-default, Swarm-style orchestration control plane")
    .option("--socket <path>", "the local daemon's control socket (default: $SHOAL_SOCKET, else DATA_DIR/shoal.sock)")
    .option("--data-dir <dir>", "the node's data directory, used to find the socket (default /var/lib/shoal)")
    .configureOutput({ writeOut: ctx.io.stdout, writeErr: ctx.io.stderr })
    .showHelpAfterError("(run `shoal --help` for usage)")
    // Set before any subcommand is added so that every subcommand inherits it.
    .exitOverride();
  registerClusterCommands(program, ctx);
  registerRootCaCommand(program, ctx);
  registerNodeCommands(program, ctx);
  registerServiceCommands(program, ctx);
  registerSecretCommands(program, ctx);
  registerRegistryCommands(program, ctx);
  registerImageCommands(program, ctx);
  registerEventsCommand(program, ctx);
  registerDaemonCommand(program, ctx.io.stdin);
  return program;
}

/** Runs one command line (without "node" and the script path) and returns the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let client: DaemonClient | undefined;
  let program: Command | undefined;
  const ctx: CommandContext = {
    io,
    daemon: () => {
      client ??= new DaemonClient(resolveSocketPath(program?.opts<SocketOptions>() ?? {}, io.env));
      return client;
    },
  };
  try {
    program = buildProgram(ctx);
    await program.parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (err) {
    // Commander has already printed its message (or the help text) through configureOutput.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (err instanceof CommandFailed) {
      io.stderr(`Error: ${err.message}\n`);
      return err.exitCode;
    }
    if (isShoalError(err)) {
      io.stderr(`Error: ${describeError(err)}\n`);
      return exitCodeFor(err.code);
    }
    io.stderr(`Error: ${err instanceof Error ? err.message : String(err)}: this is a bug in shoal, please report it\n`);
    return EXIT_GENERIC;
  } finally {
    client?.close();
  }
}
