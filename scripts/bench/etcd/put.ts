// etcd baseline for Shoal's cluster write benchmark (issue 4): committed 256 B puts per second and
// p50/p99 latency on a 3-member etcd with mutual TLS on client and peer URLs and default fsync, at
// 1 and 256 closed-loop clients; prints one JSON object. Shoal's benchmark calls measureEtcdPuts in
// the same run so both sides see the same machine load.
// Run: node --import tsx scripts/bench/etcd/put.ts [--duration-ms 5000] [--warmup-ms 1000] [--clients 1,256] [--plain]
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { ShoalError } from "../../../src/base/errors.js";
import { argValue } from "../lib/args.js";
import { runLoad, type LoadResult } from "../lib/load.js";
import { totalCpuMs } from "../lib/proc-cpu.js";
import { ETCD_INSTALL_HINT, etcdVersion, findEtcdBinary, startEtcdCluster, type EtcdCluster } from "./cluster.js";
import { EtcdKvClient } from "./kv-client.js";

export interface EtcdPutOptions {
  /** Closed-loop client counts to measure, in order (the issue asks for [1, 256]). */
  clientsList: number[];
  /** Measured window per client count. */
  durationMs: number;
  /** Unmeasured warm-up per client count (default 1000). */
  warmupMs?: number;
  /** Value size (default 256). */
  valueBytes?: number;
  /** Members (default 3). */
  members?: number;
  /** Mutual TLS on client and peer URLs (default true; false only to compare with plain-http figures). */
  tls?: boolean;
  /** HTTP/2 connections for a given client count (default min(clients, 16)). */
  channelsFor?: (clients: number) => number;
  /** Where the cluster's temp directory goes (default the OS temp dir). */
  baseDir?: string;
}

/** The closed loop's figures a run reports (scripts/bench/lib/load.ts), with the run's shape and CPU. */
export interface EtcdPutResult extends Pick<LoadResult, "ops" | "errors" | "opsPerSecond" | "p50Ms" | "p90Ms" | "p99Ms" | "maxMs" | "firstError"> {
  clients: number;
  channels: number;
  /** CPU the benchmark process itself used (client encoding, TLS, gRPC), in % of one core: near 100 means the client, not etcd, may be the limit. */
  clientCpuPercent: number;
  /** CPU per completed write of the benchmark process (the client) and of all server processes together, in ms: the machine is CPU-bound at 256 clients, so these say where the cost is. */
  clientCpuMsPerWrite: number;
  serverCpuMsPerWrite: number;
}

export interface EtcdPutMeasurement {
  bench: "etcd-put";
  etcdVersion: string;
  members: number;
  tls: boolean;
  valueBytes: number;
  durationMs: number;
  warmupMs: number;
  /** Keys are `bench/<worker>/<seq mod 1000>`; worker w uses connection w mod channels; connection i dials member i mod members (as etcd's own `benchmark` tool does). */
  keyPattern: string;
  results: EtcdPutResult[];
  /** The leader's WAL fsync latency during the runs, from etcd_disk_wal_fsync_duration_seconds (p50 interpolated within the histogram's power-of-two buckets). */
  fsyncP50Ms?: number;
  fsyncMeanMs?: number;
  fsyncCount?: number;
  /** 1-minute load average before and after, since other work on the machine moves these figures. */
  loadAvg1mBefore: number;
  loadAvg1mAfter: number;
}

/** One run's figures from the closed loop's result and the CPU measured around it. */
export function putResult(clients: number, channels: number, load: LoadResult, cpu: { clientCpu: NodeJS.CpuUsage; wallMs: number; serverCpuMs: number }): EtcdPutResult {
  const clientCpuMs = (cpu.clientCpu.user + cpu.clientCpu.system) / 1000;
  return {
    clients,
    channels,
    ops: load.ops,
    errors: load.errors,
    opsPerSecond: load.opsPerSecond,
    p50Ms: load.p50Ms,
    p90Ms: load.p90Ms,
    p99Ms: load.p99Ms,
    maxMs: load.maxMs,
    clientCpuPercent: Math.round((clientCpuMs / cpu.wallMs) * 1000) / 10,
    clientCpuMsPerWrite: perWrite(clientCpuMs, load.completedOps),
    serverCpuMsPerWrite: perWrite(cpu.serverCpuMs, load.completedOps),
    ...(load.firstError !== undefined ? { firstError: load.firstError } : {}),
  };
}

/** CPU ms per completed write, to 3 decimals (NaN when nothing completed). */
export function perWrite(cpuMs: number, writes: number): number {
  return writes > 0 ? Math.round((cpuMs / writes) * 1000) / 1000 : NaN;
}

export const DEFAULT_CHANNELS_FOR = (clients: number): number => Math.min(clients, 16);

function loadAvg1m(): number {
  try {
    return Number(fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return -1;
  }
}

interface FsyncHistogram {
  /** Cumulative counts by upper bound in seconds (Prometheus `le`), ascending, +Inf last. */
  buckets: { leS: number; count: number }[];
  sumS: number;
  count: number;
}

function parseFsyncHistogram(metricsText: string): FsyncHistogram | undefined {
  const buckets: { leS: number; count: number }[] = [];
  let sumS: number | undefined;
  let count: number | undefined;
  for (const line of metricsText.split("\n")) {
    const bucket = /^etcd_disk_wal_fsync_duration_seconds_bucket\{le="([^"]+)"\}\s+(\S+)/.exec(line);
    if (bucket !== null) buckets.push({ leS: bucket[1] === "+Inf" ? Infinity : Number(bucket[1]), count: Number(bucket[2]) });
    const sum = /^etcd_disk_wal_fsync_duration_seconds_sum\s+(\S+)/.exec(line);
    if (sum !== null) sumS = Number(sum[1]);
    const n = /^etcd_disk_wal_fsync_duration_seconds_count\s+(\S+)/.exec(line);
    if (n !== null) count = Number(n[1]);
  }
  if (buckets.length === 0 || sumS === undefined || count === undefined) return undefined;
  buckets.sort((a, b) => a.leS - b.leS);
  return { buckets, sumS, count };
}

/** p50 of (after − before), linearly interpolated inside the bucket that holds it. */
function fsyncStats(before: FsyncHistogram, after: FsyncHistogram): { p50Ms: number; meanMs: number; count: number } | undefined {
  const count = after.count - before.count;
  if (count <= 0 || before.buckets.length !== after.buckets.length) return undefined;
  const rank = count / 2;
  let lowerS = 0;
  let lowerCount = 0;
  for (let i = 0; i < after.buckets.length; i++) {
    const upper = after.buckets[i]!;
    const cumulative = upper.count - before.buckets[i]!.count;
    if (cumulative >= rank) {
      const upperS = Number.isFinite(upper.leS) ? upper.leS : lowerS * 2;
      const inBucket = cumulative - lowerCount;
      const p50S = lowerS + (inBucket > 0 ? ((rank - lowerCount) / inBucket) * (upperS - lowerS) : 0);
      return { p50Ms: Math.round(p50S * 1e6) / 1000, meanMs: Math.round(((after.sumS - before.sumS) / count) * 1e6) / 1000, count };
    }
    lowerS = upper.leS;
    lowerCount = cumulative;
  }
  return undefined;
}

/** The leader's index and fsync histogram (the leader's fsync is on every commit's critical path). */
async function leaderFsync(cluster: EtcdCluster): Promise<{ leader: number; histogram: FsyncHistogram } | undefined> {
  const texts = await Promise.all(cluster.endpoints.map((_, i) => cluster.metrics(i).catch(() => "")));
  const leader = texts.findIndex((t) => /^etcd_server_is_leader\s+1\s*$/m.test(t));
  if (leader < 0) return undefined;
  const histogram = parseFsyncHistogram(texts[leader]!);
  return histogram !== undefined ? { leader, histogram } : undefined;
}

/**
 * A running throwaway etcd cluster that can be measured several times (cluster-write.ts alternates
 * rounds of Shoal and etcd so both see the same machine, whatever else it is doing meanwhile).
 */
export class EtcdPutSession {
  private readonly value: Buffer;
  private readonly loadAvg1mBefore = loadAvg1m();

  private constructor(
    private readonly cluster: EtcdCluster,
    readonly version: string,
    private readonly options: { valueBytes: number; members: number; tls: boolean; channelsFor: (clients: number) => number },
    private readonly fsyncBefore: { leader: number; histogram: FsyncHistogram } | undefined,
  ) {
    this.value = randomBytes(options.valueBytes);
  }

  /** Starts the cluster; `{ skipped }` when etcd is not installed. */
  static async start(options: Omit<EtcdPutOptions, "clientsList" | "durationMs" | "warmupMs">): Promise<EtcdPutSession | { skipped: string }> {
    const valueBytes = options.valueBytes ?? 256;
    const members = options.members ?? 3;
    const tls = options.tls ?? true;
    if (!Number.isInteger(valueBytes) || valueBytes < 0 || valueBytes > 1024 * 1024) throw new ShoalError("INVALID_ARGUMENT", `valueBytes must be in 0..1 MiB, got ${valueBytes}`);
    const binary = findEtcdBinary();
    if (binary === undefined) return { skipped: ETCD_INSTALL_HINT };
    const version = etcdVersion(binary);
    const cluster = await startEtcdCluster({ members, tls, etcdBinary: binary, ...(options.baseDir !== undefined ? { baseDir: options.baseDir } : {}) });
    try {
      const fsyncBefore = await leaderFsync(cluster);
      return new EtcdPutSession(cluster, version, { valueBytes, members, tls, channelsFor: options.channelsFor ?? DEFAULT_CHANNELS_FOR }, fsyncBefore);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  /** One closed-loop run at `clients` concurrent writers. */
  async measure(clients: number, durationMs: number, warmupMs: number): Promise<EtcdPutResult> {
    if (!Number.isInteger(clients) || clients < 1 || clients > 10_000) throw new ShoalError("INVALID_ARGUMENT", `client counts must be integers in 1..10000, got ${clients}`);
    const cluster = this.cluster;
    const channels = this.options.channelsFor(clients);
    const client = new EtcdKvClient({
      endpoints: cluster.endpoints,
      channels,
      ...(this.options.tls ? { tls: { caPem: cluster.caPem, certPem: cluster.clientCertPem, keyPem: cluster.clientKeyPem } } : {}),
    });
    try {
      await client.connect(10_000);
      const cpuBefore = process.cpuUsage();
      const serverCpuBeforeMs = totalCpuMs(cluster.pids);
      const wallBeforeMs = performance.now();
      // Keys are built per call so string building is part of the measured client cost, as it will be for Shoal.
      const load = await runLoad({
        concurrency: clients,
        durationMs,
        warmupMs,
        op: async (worker, seq) => {
          await client.put(`bench/${worker}/${seq % 1000}`, this.value, worker);
        },
      });
      return putResult(clients, channels, load, {
        clientCpu: process.cpuUsage(cpuBefore),
        wallMs: performance.now() - wallBeforeMs,
        serverCpuMs: totalCpuMs(cluster.pids) - serverCpuBeforeMs,
      });
    } finally {
      client.close();
    }
  }

  /** Everything but the results: version, settings, the leader's fsync latency since start. */
  async summary(durationMs: number, warmupMs: number, results: EtcdPutResult[]): Promise<EtcdPutMeasurement> {
    const fsyncAfter = await leaderFsync(this.cluster);
    const before = this.fsyncBefore;
    const fsync = before !== undefined && fsyncAfter !== undefined && before.leader === fsyncAfter.leader ? fsyncStats(before.histogram, fsyncAfter.histogram) : undefined;
    return {
      bench: "etcd-put",
      etcdVersion: this.version,
      members: this.options.members,
      tls: this.options.tls,
      valueBytes: this.options.valueBytes,
      durationMs,
      warmupMs,
      keyPattern: "bench/<worker>/<seq mod 1000>",
      results,
      ...(fsync !== undefined ? { fsyncP50Ms: fsync.p50Ms, fsyncMeanMs: fsync.meanMs, fsyncCount: fsync.count } : {}),
      loadAvg1mBefore: this.loadAvg1mBefore,
      loadAvg1mAfter: loadAvg1m(),
    };
  }

  stop(): Promise<void> {
    return this.cluster.stop();
  }
}

/**
 * Starts a throwaway etcd cluster, measures closed-loop puts at each client count, stops the cluster.
 * Returns `{ skipped }` when etcd is not installed, so a caller can still print its own figures.
 */
export async function measureEtcdPuts(options: EtcdPutOptions): Promise<EtcdPutMeasurement | { skipped: string }> {
  const warmupMs = options.warmupMs ?? 1000;
  const session = await EtcdPutSession.start(options);
  if (!(session instanceof EtcdPutSession)) return session;
  try {
    const results: EtcdPutResult[] = [];
    for (const clients of options.clientsList) results.push(await session.measure(clients, options.durationMs, warmupMs));
    return await session.summary(options.durationMs, warmupMs, results);
  } finally {
    await session.stop();
  }
}

async function main(): Promise<void> {
  const durationMs = Number(argValue("--duration-ms") ?? 5000);
  const warmupMs = Number(argValue("--warmup-ms") ?? 1000);
  const clientsList = (argValue("--clients") ?? "1,256").split(",").map(Number);
  const tls = !process.argv.includes("--plain");
  const measurement = await measureEtcdPuts({ clientsList, durationMs, warmupMs, tls });
  console.log(JSON.stringify(measurement));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
