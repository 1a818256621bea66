// Many agent sessions against one manager daemon (a one-manager cluster, child process, the default
// 5 s heartbeat period): this process joins N worker identities through the real CA, opens one mTLS
// channel per identity with a Session stream, an Assignments stream and heartbeats at the period the
// manager tells it, waits until every node is READY, and then measures the manager's CPU (% of one
// core, from /proc utime+stime) and RSS over a steady window. Targets (issue 9): ≤ 25 % of one core,
// ≤ 500 MB RSS at 2,000 sessions. Prints one JSON object.
// Run: node --import tsx scripts/bench/dispatcher-sessions.ts [--sessions 2000] [--window-s 60] [--warmup-s 10]
//        [--keepalive-ms 10000]   (the client keepalive ping interval; the real agent's is 10 s)
// Profile the manager over the window: SHOAL_CPU_PROF_DIR=DIR NODE_OPTIONS="--import tsx --import
// ./scripts/bench/profile-cpu-hook.ts" (SIGUSR2 starts and stops the profile; see that file).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { createNodeKeyAndCsr } from "../../src/ca/index.js";
import { CAClient, type IssueNodeCertificateResponse, type NodeCertificateStatusResponse } from "../../src/proto/shoal/v1/ca.js";
import { DispatcherClient, type AssignmentsMessage, type HeartbeatResponse, type SessionMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { CertificateStatus, NodeAvailability, NodeState } from "../../src/proto/shoal/v1/objects.js";
import { createJoinChannel, createSecureChannel, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { argNumber } from "./lib/args.js";
import { processCpuMs } from "./lib/proc-cpu.js";
import { expectOk, formCluster, loadAvg1m } from "../lib/local-cluster.js";
import { sleep, waitFor } from "../lib/wait.js";

const TARGET = { cpuPercentOfOneCore: 25, rssMB: 500 };
/** Joins and connects in flight at once from this process (2 cores shared with the daemon). */
const JOIN_CONCURRENCY = 16;
const CONNECT_CONCURRENCY = 32;
const CALL_DEADLINE_MS = 20_000;

interface Identity {
  nodeId: string;
  certPem: string;
  keyPem: string;
}

function rssMB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Math.round((Number(line?.replace(/\D+/g, "") ?? NaN) / 1024) * 10) / 10;
}

async function joinOne(addr: string, rootCaPem: string, token: string, i: number): Promise<Identity> {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const ch = createJoinChannel(addr, rootCaPem);
  try {
    const ca = ch.client(CAClient);
    const issued = await unaryCall<IssueNodeCertificateResponse>((cb) =>
      ca.issueNodeCertificate({ csr: Buffer.from(csrPem), token, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, hostname: `sim-${i}`, addr: "" }, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, cb),
    );
    for (;;) {
      const status = await unaryCall<NodeCertificateStatusResponse>((cb) => ca.nodeCertificateStatus({ nodeId: issued.nodeId }, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, cb));
      if (status.status === CertificateStatus.CERTIFICATE_STATUS_ISSUED && status.certificate.length > 0) {
        return { nodeId: issued.nodeId, certPem: Buffer.from(status.certificate).toString("utf8"), keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
      }
      await sleep(50);
    }
  } finally {
    ch.close();
  }
}

async function pool<T>(count: number, concurrency: number, one: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await one(i);
      }
    }),
  );
  return out;
}

interface SimAgent {
  ch: SecureChannel;
  stop(): void;
}

const stats = { heartbeats: 0, heartbeatErrors: 0, sessionErrors: 0, assignmentMessages: 0, periodsMs: new Set<number>() };

/** One simulated agent: a session, its assignments stream, heartbeats at the told period (as the real agent does). */
function startAgent(addr: string, rootCaPem: string, clusterId: string, id: Identity, keepaliveMs: number): Promise<SimAgent> {
  const ch = createSecureChannel(addr, { rootCaPem, certPem: id.certPem, keyPem: id.keyPem, expectServerRole: "swarm-manager", clusterId, keepalive: { timeMs: keepaliveMs, timeoutMs: 5_000 } });
  const dispatcher = ch.client(DispatcherClient);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  return new Promise<SimAgent>((resolve, reject) => {
    const session = dispatcher.session({ description: { hostname: `sim-${id.nodeId.slice(0, 6)}`, platform: "linux/x64", engineVersion: "", engineLabels: {}, executors: ["process"], resources: undefined }, addr: "" });
    let assignments: grpc.ClientReadableStream<AssignmentsMessage> | undefined;
    const stop = (): void => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      assignments?.cancel();
      session.cancel();
      ch.close();
    };
    session.once("data", (first: SessionMessage) => {
      assignments = dispatcher.assignments({ sessionId: first.sessionId });
      assignments.on("data", () => stats.assignmentMessages++);
      assignments.on("error", () => undefined);
      const beat = (): void => {
        dispatcher.heartbeat({ sessionId: first.sessionId }, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res?: HeartbeatResponse) => {
          if (stopped) return;
          if (err) stats.heartbeatErrors++;
          else stats.heartbeats++;
          const periodMs = res?.periodMs ?? 5000;
          stats.periodsMs.add(periodMs);
          timer = setTimeout(beat, periodMs);
        });
      };
      beat();
      resolve({ ch, stop });
    });
    session.on("data", () => undefined);
    session.on("error", (err) => {
      if (stopped) return;
      stats.sessionErrors++;
      reject(err);
    });
  });
}

async function main(): Promise<void> {
  const sessions = argNumber("--sessions", 2000);
  const windowS = argNumber("--window-s", 60);
  const warmupS = argNumber("--warmup-s", 10);
  const keepaliveMs = argNumber("--keepalive-ms", 10_000);
  const startedAt = performance.now();
  const cluster = await formCluster({ managers: 1, workers: 0 });
  const manager = cluster.managers[0]!;
  const pid = manager.child!.pid!;
  const token = expectOk(await manager.shoal(["join-token", "worker", "-q"]), "join-token worker").trim();
  const rootCaPem = readFileSync(join(manager.dataDir, "certificates/root-ca.crt"), "utf8");
  const clusterId = (await manager.info()).clusterId;

  const joinStart = performance.now();
  const identities = await pool(sessions, JOIN_CONCURRENCY, (i) => joinOne(manager.addr, rootCaPem, token, i));
  const joinMs = performance.now() - joinStart;
  const idleRssMB = rssMB(pid);

  const connectStart = performance.now();
  const agents = await pool(sessions, CONNECT_CONCURRENCY, (i) => startAgent(manager.addr, rootCaPem, clusterId, identities[i]!, keepaliveMs));
  await waitFor(
    `all ${sessions} nodes READY`,
    async () => (await manager.client.listNodes()).filter((n) => n.status?.state === NodeState.NODE_STATE_READY).length >= sessions + 1 || undefined,
    120_000,
    1000,
  );
  const connectMs = performance.now() - connectStart;
  await sleep(warmupS * 1000);

  const profiling = process.env["SHOAL_CPU_PROF_DIR"] !== undefined;
  if (profiling) process.kill(pid, "SIGUSR2");
  const cpu0 = processCpuMs(pid);
  const self0 = process.cpuUsage();
  const beats0 = stats.heartbeats;
  const t0 = performance.now();
  let maxRss = rssMB(pid);
  for (let s = 0; s < windowS; s += 5) {
    await sleep(Math.min(5, windowS - s) * 1000);
    maxRss = Math.max(maxRss, rssMB(pid));
  }
  const wallMs = performance.now() - t0;
  const cpuMs = processCpuMs(pid) - cpu0;
  if (profiling) {
    process.kill(pid, "SIGUSR2");
    await sleep(2000);
  }
  const self = process.cpuUsage(self0);
  const beats = stats.heartbeats - beats0;
  const down = (await manager.client.listNodes()).filter((n) => n.status?.state === NodeState.NODE_STATE_DOWN).length;
  const rssEnd = rssMB(pid);

  for (const agent of agents) agent.stop();
  const managerCpuPercent = Math.round((cpuMs / wallMs) * 1000) / 10;
  const periods = [...stats.periodsMs].sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      bench: "dispatcher-sessions",
      node: process.version,
      sessions,
      clientKeepaliveMs: keepaliveMs,
      heartbeatPeriodMs: { min: periods[0], max: periods.at(-1) },
      windowS: Math.round(wallMs / 100) / 10,
      managerCpuPercentOfOneCore: managerCpuPercent,
      managerRssMB: { idleBeforeSessions: idleRssMB, end: rssEnd, maxInWindow: maxRss },
      heartbeatsPerSecond: Math.round((beats / wallMs) * 10_000) / 10,
      heartbeatErrors: stats.heartbeatErrors,
      sessionErrors: stats.sessionErrors,
      nodesDownAtEnd: down,
      assignmentMessages: stats.assignmentMessages,
      clientProcess: { cpuPercentOfOneCore: Math.round(((self.user + self.system) / 1000 / wallMs) * 1000) / 10, rssMB: Math.round(process.memoryUsage().rss / 1024 / 102.4) / 10 },
      setup: { joinS: Math.round(joinMs / 100) / 10, connectAndReadyS: Math.round(connectMs / 100) / 10, totalS: Math.round((performance.now() - startedAt) / 100) / 10 },
      loadAvg1m: loadAvg1m(),
      target: TARGET,
      meetsTarget: managerCpuPercent <= TARGET.cpuPercentOfOneCore && maxRss <= TARGET.rssMB,
    }),
  );
  await cluster.cluster.close();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : String(err));
  process.exit(1);
});
