// Entry point of the `shoal` command (run by bin/shoal.js): wires runCli to the process.
import { runCli } from "./program.js";

const exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stdin: process.stdin,
  env: process.env,
});
process.exitCode = exitCode;
