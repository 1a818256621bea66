// One chaos run: N managers as real daemon processes, a client workload through every manager's
// socket, a fault scheduler (SIGKILL, SIGSTOP/SIGCONT, restarts), then every manager is SIGKILLed
// and restarted and every key read back. The history is checked for linearizability and for
// acknowledged writes that were lost. A failed run keeps its data dirs, logs and history.
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { SeededRandom } from "../../src/base/random.js";
import { checkLinearizable, describeOp, type HistoryOp } from "../../cluster-sim/linearizability.js";
import { loadAvg1m } from "../lib/local-cluster.js";
import { FAST_DAEMON_FLAGS, ProcessCluster, waitForVoters, type NodeProcess } from "../lib/process-cluster.js";
import { sleep, waitFor } from "../lib/wait.js";
import { findLostWrites, type FinalValue } from "./analysis.js";
import { FaultScheduler, RESTART_TIMEOUT_MS, type FaultRecord } from "./faults.js";
import { monotonicSince, Workload, type RecordedOp, type WorkloadCounts } from "./workload.js";

export interface ChaosOptions {
  managers: number;
  clients: number;
  faults: number;
  keys: number;
  seed: number;
  /** Keep the data dirs, logs and history even when the run passes. */
  keep: boolean;
  /** Search steps per key for the checker before it gives up ("exhausted"). */
  maxStepsPerKey?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  ok: boolean;
  /** Why the run failed, one line each. */
  failures: string[];
  seed: number;
  managers: number;
  clients: number;
  keys: number;
  faults: { total: number; kills: number; pauses: number; leaderFaults: number; recovered: number };
  operations: WorkloadCounts & { total: number; okAfterLastFault: number };
  acknowledgedWrites: number;
  acknowledgedWritesLost: number;
  linearizable: boolean;
  /** Per-key verdicts that are not "linearizable". */
  keyVerdicts: { key: string; ops: number; verdict: string }[];
  checkMs: number;
  durationMs: number;
  loadAvg1mBefore: number;
  loadAvg1mAfter: number;
  /** Set when the run kept its files. */
  keptDir?: string;
  historyFile?: string;
  counterexample?: string[];
}

const FORM_TIMEOUT_MS = 120_000;
const RECOVERY_TIMEOUT_MS = 60_000;
/** The workload runs this long before the first fault and after the last recovery. */
const SETTLE_MS = 2_000;

async function formCluster(cluster: ProcessCluster, managers: number): Promise<NodeProcess[]> {
  const nodes = await Promise.all(Array.from({ length: managers }, (_, i) => cluster.add(`m${i + 1}`)));
  const first = nodes[0]!;
  const { managerToken } = await cluster.init(first.name);
  for (const m of nodes.slice(1)) await cluster.join(m.name, managerToken, first.addr);
  await waitForVoters(first, managers, { timeoutMs: FORM_TIMEOUT_MS });
  return nodes;
}

/** Reads `key` on any manager until one answers (a linearizable read on the leader). */
async function readBack(nodes: readonly NodeProcess[], key: string): Promise<{ value: string | null; index: bigint }> {
  let turn = 0;
  return waitFor(
    `a linearizable read of ${key}`,
    async () => {
      const node = nodes[turn++ % nodes.length]!;
      const client = node.newControlClient();
      try {
        const res = await new Promise<{ found: boolean; value: Uint8Array; index: bigint }>((ok, fail) =>
          client.getValue({ key }, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, r) => (err ? fail(err) : ok(r))),
        );
        return { value: res.found ? Buffer.from(res.value).toString("utf8") : null, index: res.index };
      } finally {
        client.close();
      }
    },
    RECOVERY_TIMEOUT_MS,
    200,
  );
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const startedMs = performance.now();
  const nowMs = monotonicSince(startedMs);
  const loadBefore = loadAvg1m();
  const random = new SeededRandom(options.seed);
  const root = mkdtempSync(join(tmpdir(), "shoal-chaos-"));
  const cluster = new ProcessCluster(FAST_DAEMON_FLAGS, root);
  const failures: string[] = [];
  let workload: Workload | undefined;
  let records: FaultRecord[] = [];
  const finalReads: RecordedOp[] = [];
  const finalValues = new Map<string, FinalValue>();
  try {
    log(`forming ${options.managers} managers under ${root}`);
    const managers = await formCluster(cluster, options.managers);
    workload = new Workload({ clients: options.clients, keys: options.keys, managers, random: new SeededRandom(options.seed ^ 0x5eed), nowMs, maxThinkMs: 10 });
    workload.start();
    log(`${options.clients} clients running on ${options.keys} keys`);
    await sleep(SETTLE_MS);
    const scheduler = new FaultScheduler({
      faults: options.faults,
      managers,
      maxDown: Math.floor((options.managers - 1) / 2),
      random,
      nowMs,
      gapMs: [500, 2000],
      downMs: [1000, 4000],
      pauseMs: [1500, 4000],
      log,
    });
    records = await scheduler.run();
    for (const r of records) if (r.error !== undefined) failures.push(`${r.node} did not come back after ${r.kind}: ${r.error}`);
    await waitFor(
      "a leader after the last fault",
      async () => {
        const infos = await Promise.all(managers.map((m) => m.info().catch(() => undefined)));
        return infos.every((i) => i !== undefined && i.leaderNodeId !== "") || undefined;
      },
      RECOVERY_TIMEOUT_MS,
      200,
    ).catch((err: unknown) => failures.push(`no leader on every manager after the faults: ${String(err)}`));
    const lastFaultMs = Math.max(0, ...records.map((r) => r.recoveredAtMs ?? r.atMs));
    await sleep(SETTLE_MS);
    await workload.stop();
    log(`workload stopped: ${JSON.stringify(workload.counts)}`);
    for (const m of managers) if (!m.running) failures.push(`${m.name} is not running at the end (it exited on its own; see ${m.logFile})`);

    // Every manager crashes at once and comes back: acknowledged writes must still be there.
    await Promise.all(managers.map((m) => m.stop("SIGKILL")));
    await Promise.all(managers.map((m) => m.start(RESTART_TIMEOUT_MS)));
    for (let k = 0; k < options.keys; k++) {
      const key = workload.keyName(k);
      const invokeMs = nowMs();
      const read = await readBack(managers, key);
      finalValues.set(key, read);
      finalReads.push({ id: 1e9 + k, clientId: -1, input: { kind: "get", key }, output: { kind: "get", value: read.value }, invokeMs, returnMs: nowMs(), index: String(read.index), via: "final" });
    }
    const okAfterLastFault = workload.history.filter((op) => op.output !== undefined && op.invokeMs > lastFaultMs).length;
    if (okAfterLastFault === 0) failures.push("no operation completed after the last fault");

    const loss = findLostWrites(workload.history, finalValues);
    failures.push(...loss.problems);
    const acked = loss.acknowledged;
    const lost = loss.lost;

    const history: HistoryOp[] = [...workload.history, ...finalReads];
    const checkStarted = performance.now();
    const verdict = checkLinearizable(history, { maxStepsPerKey: options.maxStepsPerKey ?? 20_000_000 });
    const checkMs = Math.round(performance.now() - checkStarted);
    const notLinearizable = verdict.keys.filter((k) => k.verdict !== "linearizable");
    if (!verdict.ok) failures.push(`history not linearizable on ${verdict.counterexample!.key}`);
    for (const k of notLinearizable) if (k.verdict === "exhausted") failures.push(`the checker gave up on ${k.key} (${k.ops} ops): no verdict`);

    const counts = workload.counts;
    const report: ChaosReport = {
      ok: failures.length === 0,
      failures,
      seed: options.seed,
      managers: options.managers,
      clients: options.clients,
      keys: options.keys,
      faults: {
        total: records.length,
        kills: records.filter((r) => r.kind === "kill").length,
        pauses: records.filter((r) => r.kind === "pause").length,
        leaderFaults: records.filter((r) => r.wasLeader).length,
        recovered: records.filter((r) => r.recoveredAtMs !== undefined && r.error === undefined).length,
      },
      operations: { ...counts, total: workload.history.length, okAfterLastFault },
      acknowledgedWrites: acked.length,
      acknowledgedWritesLost: lost.length,
      linearizable: verdict.ok && notLinearizable.length === 0,
      keyVerdicts: notLinearizable,
      checkMs,
      durationMs: Math.round(nowMs()),
      loadAvg1mBefore: loadBefore,
      loadAvg1mAfter: loadAvg1m(),
      ...(verdict.counterexample ? { counterexample: verdict.counterexample.ops.slice(0, 200).map(describeOp) } : {}),
    };
    return await finish(report, cluster, history, records, options.keep);
  } catch (err) {
    failures.push(`the run stopped: ${err instanceof Error ? err.message : String(err)}`);
    const history = [...(workload?.history ?? []), ...finalReads];
    const report: ChaosReport = {
      ok: false,
      failures,
      seed: options.seed,
      managers: options.managers,
      clients: options.clients,
      keys: options.keys,
      faults: { total: records.length, kills: 0, pauses: 0, leaderFaults: 0, recovered: 0 },
      operations: { ...(workload?.counts ?? { ok: 0, casConflicts: 0, notSent: 0, unknown: 0 }), total: history.length, okAfterLastFault: 0 },
      acknowledgedWrites: 0,
      acknowledgedWritesLost: 0,
      linearizable: false,
      keyVerdicts: [],
      checkMs: 0,
      durationMs: Math.round(nowMs()),
      loadAvg1mBefore: loadBefore,
      loadAvg1mAfter: loadAvg1m(),
    };
    await workload?.stop().catch(() => undefined);
    return finish(report, cluster, history, records, true);
  }
}

/** Stops the daemons; a failed (or --keep) run keeps its directory and writes the history there. */
async function finish(report: ChaosReport, cluster: ProcessCluster, history: HistoryOp[], faults: FaultRecord[], keep: boolean): Promise<ChaosReport> {
  const keepFiles = keep || !report.ok;
  if (keepFiles) {
    const historyFile = join(cluster.root, "history.json");
    // Infinity (an unknown outcome) is not JSON: it is written as null.
    writeFileSync(historyFile, JSON.stringify({ report, faults, history }, (_k, v: unknown) => (v === Infinity ? null : v)));
    report.keptDir = cluster.root;
    report.historyFile = historyFile;
  }
  await cluster.close({ keep: keepFiles });
  return report;
}
