// Join latency on a cluster of real daemon processes: time from `shoal join` (the Join call on the
// joiner's socket, which is what the CLI sends) to the node listed READY in the first manager's
// `node ls`, for workers and then managers (default raft timing). Daemons are started before the
// clock starts. One extra join per role goes through the real CLI process, startup included.
// Prints one JSON object. Run: node --import tsx scripts/bench/cluster-join.ts [--workers 5] [--managers 3]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { NodeAvailability, NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { argNumber } from "./lib/args.js";
import { formCluster, listNodes, loadAvg1m } from "../lib/local-cluster.js";
import type { NodeProcess } from "../lib/process-cluster.js";
import { waitFor } from "../lib/wait.js";

const READY_TIMEOUT_MS = 30_000;
const TARGET_MS = 1000;

interface JoinSample {
  node: string;
  via: "socket" | "cli";
  /** Join call (or CLI process) start → it returned. */
  joinReturnedMs: number;
  /** Join start → READY in `node ls` on the first manager. */
  readyMs: number;
  /** Managers: join start → `node ls` shows it reachable (a raft member the leader hears from). */
  reachableMs?: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Polls `node ls` on the observer every 10 ms until the joiner's ID shows READY (and reachable, for managers). */
async function timeUntilReady(observer: NodeProcess, joiner: NodeProcess, startMs: number, manager: boolean): Promise<{ readyMs: number; reachableMs?: number }> {
  const nodeId = await waitFor(`${joiner.name}'s node ID`, async () => (await joiner.client.info()).nodeId || undefined, READY_TIMEOUT_MS, 10);
  let readyMs: number | undefined;
  return waitFor(
    `${joiner.name} READY in node ls`,
    async () => {
      const view = (await listNodes(observer)).find((n) => n.id === nodeId);
      if (view === undefined) return undefined;
      if (view.status === "ready") readyMs ??= performance.now() - startMs;
      if (readyMs === undefined) return undefined;
      if (!manager) return { readyMs: Math.round(readyMs) };
      if (view.managerStatus !== "reachable" && view.managerStatus !== "leader") return undefined;
      return { readyMs: Math.round(readyMs), reachableMs: Math.round(performance.now() - startMs) };
    },
    READY_TIMEOUT_MS,
    10,
  );
}

async function joinViaSocket(joiner: NodeProcess, token: string, managerAddr: string, observer: NodeProcess, manager: boolean): Promise<JoinSample> {
  const startMs = performance.now();
  await joiner.client.join({ token, remoteAddr: managerAddr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  const joinReturnedMs = Math.round(performance.now() - startMs);
  return { node: joiner.name, via: "socket", joinReturnedMs, ...(await timeUntilReady(observer, joiner, startMs, manager)) };
}

async function joinViaCli(joiner: NodeProcess, token: string, managerAddr: string, observer: NodeProcess, manager: boolean): Promise<JoinSample> {
  const startMs = performance.now();
  const result = await joiner.shoal(["join", "--token", token, managerAddr]);
  if (result.code !== 0) throw new Error(`shoal join on ${joiner.name} failed: ${result.stderr.trim()}`);
  const joinReturnedMs = Math.round(performance.now() - startMs);
  return { node: joiner.name, via: "cli", joinReturnedMs, ...(await timeUntilReady(observer, joiner, startMs, manager)) };
}

function summary(samples: JoinSample[]): Record<string, unknown> {
  const ready = samples.filter((s) => s.via === "socket").map((s) => s.readyMs);
  return {
    samples,
    readyMaxMs: Math.max(...ready),
    readyMedianMs: median(ready),
    meetsTarget: Math.max(...ready) <= TARGET_MS,
  };
}

async function main(): Promise<void> {
  const workerRounds = argNumber("--workers", 5);
  const managerRounds = argNumber("--managers", 3);
  const loadBefore = loadAvg1m();
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-bench-join-"));
  let formed: Awaited<ReturnType<typeof formCluster>> | undefined;
  try {
    const cluster = (formed = await formCluster({ managers: 1, workers: 0, baseDir }));
    const first = cluster.managers[0]!;
    // +1 per role for the CLI-driven join; all daemons up before any clock starts.
    const workers = await Promise.all(Array.from({ length: workerRounds + 1 }, (_, i) => cluster.cluster.add(`joiner-w${i + 1}`)));
    const managers = await Promise.all(Array.from({ length: managerRounds + 1 }, (_, i) => cluster.cluster.add(`joiner-m${i + 1}`)));
    const workerToken = (await first.client.getJoinToken({ role: NodeRole.NODE_ROLE_WORKER, rotate: false, expiresInSeconds: 0n })).token;
    const managerToken = (await first.client.getJoinToken({ role: NodeRole.NODE_ROLE_MANAGER, rotate: false, expiresInSeconds: 0n })).token;

    const workerSamples: JoinSample[] = [];
    for (const w of workers.slice(0, workerRounds)) workerSamples.push(await joinViaSocket(w, workerToken, first.addr, first, false));
    workerSamples.push(await joinViaCli(workers[workerRounds]!, workerToken, first.addr, first, false));
    const managerSamples: JoinSample[] = [];
    for (const m of managers.slice(0, managerRounds)) managerSamples.push(await joinViaSocket(m, managerToken, first.addr, first, true));
    managerSamples.push(await joinViaCli(managers[managerRounds]!, managerToken, first.addr, first, true));

    console.log(
      JSON.stringify({
        bench: "cluster-join",
        raft: { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 },
        measured: "Join call on the joiner's socket (what `shoal join` sends) → READY in `node ls` on the first manager, polled every 10 ms; via=cli adds the CLI process start",
        worker: summary(workerSamples),
        manager: { ...summary(managerSamples), managersAtEnd: 1 + managerRounds + 1 },
        targetMs: TARGET_MS,
        loadAvg1mBefore: loadBefore,
        loadAvg1mAfter: loadAvg1m(),
        cpus: os.cpus().length,
      }),
    );
  } finally {
    await formed?.cluster.stopAll();
    fs.rmSync(baseDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    process.exit(1);
  },
);
