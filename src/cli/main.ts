// Entry point of the `shoal` command (run by bin/shoal.js): wires runCli to the process.
import { runCli } from "./program.js";

const exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stdin: process.stdin,
  env: process.env,
  stdoutIsTTY: process.stdout.isTTY === true,
  columns: () => process.stdout.columns,
  onInterrupt: (handler) => {
    process.on("SIGINT", handler);
    return () => process.off("SIGINT", handler);
  },
});
process.exitCode = exitCode;
