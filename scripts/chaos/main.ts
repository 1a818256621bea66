// Chaos run of real Shoal daemons with a linearizability check (not run in CI; test/e2e/chaos.test.ts
// runs a short one). Prints one JSON report; exits 1 when the run fails, keeping its files.
// Run: node --import tsx scripts/chaos/main.ts [--faults 20] [--clients 64] [--managers 5] [--keys 8] [--seed S] [--keep]
import { argNumber, argValue } from "../bench/lib/args.js";
import { runChaos } from "./run.js";

async function main(): Promise<number> {
  const seedText = argValue("--seed");
  const seed = seedText === undefined ? Date.now() % 2 ** 31 : Number(seedText);
  if (!Number.isInteger(seed) || seed < 0) throw new Error("--seed must be a non-negative integer");
  const report = await runChaos({
    faults: argNumber("--faults", 20),
    clients: argNumber("--clients", 64),
    managers: argNumber("--managers", 5),
    keys: argNumber("--keys", 8),
    seed,
    keep: process.argv.includes("--keep"),
    log: (line) => console.error(`[chaos] ${line}`),
  });
  console.log(JSON.stringify(report, null, 2));
  if (report.keptDir !== undefined) console.error(`[chaos] kept ${report.keptDir} (daemon logs <name>.log, data dirs, history ${report.historyFile})`);
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
