// What the agent reports about its node with each session (common contract): hostname, platform,
// the executors it can run (runc only with runc on PATH and the agent running as root), the
// machine's resources, and the operator's engine labels (untrusted: never a security decision).
import { accessSync, constants as fsConstants } from "node:fs";
import { cpus, totalmem } from "node:os";
import { delimiter, join } from "node:path";
import type { NodeDescription } from "../proto/shoal/v1/objects.js";

/** Whether an executable `name` is on PATH. */
export function onPath(name: string, path: string = process.env.PATH ?? ""): boolean {
  return path.split(delimiter).some((dir) => {
    if (dir === "") return false;
    try {
      accessSync(join(dir, name), fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** ["runc", "process"] where runc is installed and the agent runs as root, else ["process"]. */
export function availableExecutors(): ("runc" | "process")[] {
  return onPath("runc") && process.getuid?.() === 0 ? ["runc", "process"] : ["process"];
}

export function describeNode(opts: { hostname: string; executors: readonly string[]; engineLabels: Record<string, string> }): NodeDescription {
  return {
    hostname: opts.hostname,
    platform: `${process.platform}/${process.arch}`,
    engineVersion: "",
    engineLabels: { ...opts.engineLabels },
    executors: [...opts.executors],
    resources: { nanoCpus: BigInt(cpus().length) * 1_000_000_000n, memoryBytes: BigInt(totalmem()), pids: 0n },
  };
}
