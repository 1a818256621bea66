// End-to-end helpers. The child-process harness itself lives in scripts/lib/ (one harness for the
// tests, the benchmarks, the demo and the chaos run); this file re-exports it under the names the
// tests import, plus assertions only tests need.
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isShoalError } from "../../src/base/errors.js";

export { FAST_DAEMON_FLAGS, freePort, NodeProcess, ProcessCluster, REPO_ROOT, waitForVoters, type CliResult } from "../../scripts/lib/process-cluster.js";
export { sleep, waitFor } from "../../scripts/lib/wait.js";

/** Every regular file under a directory (recursively). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const st = statSync(path);
    if (st.isDirectory()) out.push(...filesUnder(path));
    else if (st.isFile()) out.push(path);
  }
  return out;
}

/** Every regular file under `dir` (recursively, not following links) whose bytes contain `needle`; files that vanish during the walk are skipped. */
export function filesContaining(dir: string, needle: Buffer): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return; // gone while we walked
    }
    try {
      if (st.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
      else if (st.isFile() && readFileSync(path).includes(needle)) found.push(path);
    } catch {
      // a directory or file that went away while we walked
    }
  };
  walk(dir);
  return found;
}

export function expectCode(err: unknown, code: string): boolean {
  if (!isShoalError(err)) throw err;
  if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`);
  return true;
}
