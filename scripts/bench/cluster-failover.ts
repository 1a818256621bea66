// Leader failover on a cluster of real manager daemons (3 by default; default raft timing, see
// DEFAULT_RAFT_TIMING): a writer keeps issuing PutValue through a follower's socket, the leader is
// SIGKILLed, and we time kill → a new leader seen → the next write committed. The killed manager is
// restarted and waited for before the next round. Prints one JSON object with p50/p99/max against
// the targets of DESIGN.md §4 (p50 ≤ 1.2 s, p99 ≤ 2.0 s, max ≤ 2.5 s).
// Run: node --import tsx scripts/bench/cluster-failover.ts [--rounds 50] [--managers 5] [--keep]
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { argNumber } from "./lib/args.js";
import { percentile } from "./lib/stats.js";
import { ControlClient } from "../../src/proto/shoal/v1/control.js";
import { DEFAULT_RAFT_TIMING } from "../../src/manager/manager.js";
import { formCluster, info, loadAvg1m, nodeByAddr, waitForLeader } from "../lib/local-cluster.js";
import type { NodeProcess } from "../lib/process-cluster.js";
import { sleep, waitFor } from "../lib/wait.js";

/** A failover slower than this is a failed round, not a data point. */
const ROUND_TIMEOUT_MS = 30_000;
/** A write that takes longer than this is abandoned and retried (the writer must not wait out a dead leader). */
const WRITE_DEADLINE_MS = 2_000;
const VALUE = Buffer.alloc(256, 0x61);
/** DESIGN.md §4 / issue 8: kill → next committed write. */
const TARGET = { p50: 1200, p99: 2000, max: 2500 };

function putValue(client: ControlClient, key: string): Promise<void> {
  return new Promise((resolve, reject) => {
    client.putValue({ key, value: VALUE }, new grpc.Metadata(), { deadline: Date.now() + WRITE_DEADLINE_MS }, (err) => (err ? reject(err) : resolve()));
  });
}

interface Writer {
  /** performance.now() when the first write *issued* after `sinceMs` committed. */
  firstCommitIssuedAfter(sinceMs: number, timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
  errors: number;
  commits: number;
}

/** One closed-loop writer on a node's socket: each write starts when the previous one ends. */
function startWriter(node: NodeProcess, round: number): Writer {
  const client = new ControlClient(`unix://${node.socketPath}`, grpc.credentials.createInsecure());
  const commits: { issuedMs: number; doneMs: number }[] = [];
  let running = true;
  const state = { errors: 0, commits: 0 };
  const loop = (async () => {
    for (let seq = 0; running; seq++) {
      const issuedMs = performance.now();
      try {
        await putValue(client, `failover/${round}/${seq % 100}`);
        commits.push({ issuedMs, doneMs: performance.now() });
        state.commits++;
      } catch {
        state.errors++;
        await sleep(5);
      }
    }
  })();
  return {
    get errors() {
      return state.errors;
    },
    get commits() {
      return state.commits;
    },
    async firstCommitIssuedAfter(sinceMs, timeoutMs) {
      return waitFor("a write committed after the kill", async () => commits.find((c) => c.issuedMs >= sinceMs)?.doneMs, timeoutMs, 5);
    },
    async stop() {
      running = false;
      await loop;
      client.close();
    },
  };
}


interface Round {
  round: number;
  killed: string;
  /** Wall-clock time of the SIGKILL, to find the round in the daemons' logs (--keep). */
  killedAt: string;
  writerOn: string;
  /** Kill → a surviving manager's `info` names a new leader. */
  newLeaderMs: number;
  /** Kill → the first PutValue issued after the kill committed (what a client waits). */
  nextWriteMs: number;
  writeErrors: number;
}

async function main(): Promise<void> {
  const rounds = argNumber("--rounds", 5);
  const managers = argNumber("--managers", 3);
  const loadBefore = loadAvg1m();
  const keep = process.argv.includes("--keep");
  const cluster = await formCluster({ managers, workers: 0, ...(keep ? { baseDir: mkdtempSync(join(tmpdir(), "shoal-failover-")) } : {}) });
  const results: Round[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      const leaderView = await waitForLeader(cluster.managers[0]!, { timeoutMs: ROUND_TIMEOUT_MS });
      const leader = nodeByAddr(cluster.managers, leaderView.leaderAddr);
      if (leader === undefined) throw new Error(`no local manager has the leader's address ${leaderView.leaderAddr}`);
      const followers = cluster.managers.filter((m) => m !== leader);
      const writerNode = followers[0]!;
      const observer = followers[1]!;
      const writer = startWriter(writerNode, round);
      // Let the writer reach a steady state through the current leader first.
      await waitFor("the writer's first commits", async () => (writer.commits >= 20 ? true : undefined), ROUND_TIMEOUT_MS);
      const errorsBefore = writer.errors;
      const killMs = performance.now();
      const killedAt = new Date().toISOString();
      const killed = leader.stop("SIGKILL");
      const [newLeaderAt, nextWriteAt] = await Promise.all([
        waitForLeader(observer, { timeoutMs: ROUND_TIMEOUT_MS, notNodeId: leaderView.leaderNodeId, intervalMs: 10 }).then(() => performance.now()),
        writer.firstCommitIssuedAfter(killMs, ROUND_TIMEOUT_MS),
      ]);
      await killed;
      await writer.stop();
      results.push({
        round,
        killed: leader.name,
        killedAt,
        writerOn: writerNode.name,
        newLeaderMs: Math.round(newLeaderAt - killMs),
        nextWriteMs: Math.round(nextWriteAt - killMs),
        writeErrors: writer.errors - errorsBefore,
      });
      // Bring the killed manager back and wait until the leader counts it reachable again.
      await leader.start();
      await waitFor(
        `${leader.name} to rejoin`,
        async () => {
          const v = await info(leader);
          if (v.state !== "active" || v.leaderNodeId === "") return undefined;
          const leaderNode = nodeByAddr(cluster.managers, v.leaderAddr);
          if (leaderNode === undefined) return undefined;
          const lv = await info(leaderNode);
          return lv.managers.length === managers && lv.managers.every((m) => m.reachable) ? true : undefined;
        },
        ROUND_TIMEOUT_MS,
        100,
      );
      await sleep(1000);
    }
  } finally {
    await cluster.cluster.stopAll();
    // --keep: leave the data dirs and the daemons' logs for a look at a slow round.
    if (keep) console.error(`kept ${cluster.managers.map((m) => m.logFile).join(" ")}`);
    else await cluster.cluster.close();
  }
  const nextWrite = results.map((r) => r.nextWriteMs);
  const newLeader = results.map((r) => r.newLeaderMs);
  console.log(
    JSON.stringify({
      bench: "cluster-failover",
      managers,
      raft: DEFAULT_RAFT_TIMING,
      writer: "closed-loop PutValue (256 B) through a follower's unix socket, forwarded to the leader over mTLS",
      rounds: results,
      nextWriteP50Ms: percentile(nextWrite, 50),
      nextWriteP99Ms: percentile(nextWrite, 99),
      nextWriteMaxMs: Math.max(...nextWrite),
      newLeaderP50Ms: percentile(newLeader, 50),
      newLeaderMaxMs: Math.max(...newLeader),
      targetMs: TARGET,
      meetsTarget: percentile(nextWrite, 50) <= TARGET.p50 && percentile(nextWrite, 99) <= TARGET.p99 && Math.max(...nextWrite) <= TARGET.max,
      loadAvg1mBefore: loadBefore,
      loadAvg1mAfter: loadAvg1m(),
      cpus: (await import("node:os")).cpus().length,
    }),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    process.exit(1);
  },
);
