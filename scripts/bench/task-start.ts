// Benchmark: service create -> every replica RUNNING, on real runc containers. One manager and one
// worker (child processes) and a local registry holding the busybox test image. The first service
// makes the worker pull and unpack the image from the registry ("pulled"); then, each round, a
// service of --replicas tasks starts with the image already in the worker's content store ("warm")
// and is removed again. Per task: from the create call to the task's RUNNING timestamp. Prints one
// JSON object with p50/max per task and the whole service's time, against the target of issue 9
// (warm: p50 per task <= 1 s; pulled: reported).
// Run as root (runc): node --import tsx scripts/bench/task-start.ts [--rounds 5] [--replicas 8]
import { rmSync } from "node:fs";
import { argNumber } from "./lib/args.js";
import { percentile } from "./lib/stats.js";
import { ensureContainerTools } from "../lib/container-tools.js";
import { loadAvg1m } from "../lib/local-cluster.js";
import { FAST_DAEMON_FLAGS, ProcessCluster, type NodeProcess } from "../lib/process-cluster.js";
import { startRegistry } from "../lib/registry.js";
import { buildTestImage } from "../lib/test-image.js";
import { waitFor } from "../lib/wait.js";

const TARGET_P50_PER_TASK_MS = 1000;

interface Row {
  id: string;
  desiredState: string;
  state: string;
  updatedAt: string;
}

async function ok(node: NodeProcess, args: string[]): Promise<string> {
  const r = await node.cli(args);
  if (r.code !== 0) throw new Error(`shoal ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Creates a service of `replicas` tasks and waits until all run; returns each task's ms from the create call to its RUNNING. */
async function startService(m1: NodeProcess, name: string, image: string, replicas: number): Promise<{ perTaskMs: number[]; allMs: number }> {
  const createdAt = Date.now();
  await ok(m1, ["service", "create", "--name", name, "--replicas", String(replicas), "--stop-grace-period", "1s", "--image", image, "--", "sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]);
  const rows = await waitFor(
    `${name}'s ${replicas} tasks running`,
    async () => {
      const all = JSON.parse(await ok(m1, ["service", "ps", name, "--format", "json"])) as Row[];
      const running = all.filter((r) => r.desiredState === "running" && r.state === "running");
      return running.length === replicas ? running : undefined;
    },
    300_000,
    50,
  );
  const allMs = Date.now() - createdAt;
  return { perTaskMs: rows.map((r) => Date.parse(r.updatedAt) - createdAt), allMs };
}

async function removeService(m1: NodeProcess, name: string): Promise<void> {
  await ok(m1, ["service", "rm", name]);
  await waitFor(`${name} removed`, async () => !(await ok(m1, ["service", "ls", "--format", "json"])).includes(`"${name}"`) || undefined, 120_000, 100);
}

async function main(): Promise<void> {
  const rounds = argNumber("--rounds", 5);
  const replicas = argNumber("--replicas", 8);
  await ensureContainerTools((line) => process.stderr.write(`${line}\n`));
  const registry = await startRegistry();
  const cluster = new ProcessCluster(FAST_DAEMON_FLAGS);
  try {
    const image = await buildTestImage({ registry: registry.host, name: "shoal-bench/web", tag: "1" });
    const m1 = await cluster.add("m1", ["--secrets-dir", `/dev/shm/shoal-bench-${process.pid}-m1`]);
    await cluster.add("w1", ["--secrets-dir", `/dev/shm/shoal-bench-${process.pid}-w1`]);
    const { workerToken } = await cluster.init("m1");
    await cluster.join("w1", workerToken, m1.addr);
    await cluster.waitReady(m1, 2, 60_000);
    // Tasks go to the worker only: the manager is drained.
    await ok(m1, ["node", "update", "--availability", "drain", (await m1.info()).nodeId]);

    const pulled = await startService(m1, "pull", image.reference, replicas);
    await removeService(m1, "pull");
    const warm: number[] = [];
    const warmAll: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const r = await startService(m1, `warm${round}`, image.reference, replicas);
      warm.push(...r.perTaskMs);
      warmAll.push(r.allMs);
      await removeService(m1, `warm${round}`);
    }
    const p50 = percentile(warm, 50);
    process.stdout.write(
      `${JSON.stringify(
        {
          bench: "task-start",
          replicas,
          rounds,
          pulled: { p50PerTaskMs: percentile(pulled.perTaskMs, 50), maxPerTaskMs: Math.max(...pulled.perTaskMs), allRunningMs: pulled.allMs },
          warm: { tasks: warm.length, p50PerTaskMs: p50, p99PerTaskMs: percentile(warm, 99), maxPerTaskMs: Math.max(...warm), allRunningP50Ms: percentile(warmAll, 50) },
          target: { p50PerTaskMs: TARGET_P50_PER_TASK_MS },
          meetsTarget: p50 <= TARGET_P50_PER_TASK_MS,
          loadAvg1m: loadAvg1m(),
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await cluster.close();
    await registry.stop();
    for (const n of ["m1", "w1"]) rmSync(`/dev/shm/shoal-bench-${process.pid}-${n}`, { recursive: true, force: true });
  }
}

await main();
