// PutValue throughput and latency on a 3-manager Shoal cluster of real daemon processes (default
// raft timing), with 1 and 256 concurrent clients writing 256-byte values through the leader's
// socket; then the same against a 3-member TLS etcd if `etcd` is installed, and the ratio.
// Run: node --import tsx scripts/bench/cluster-write.ts [--seconds 5]
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProcessCluster, freePort, waitFor } from "../../test/e2e/cluster.js";

const seconds = Number(process.argv[process.argv.indexOf("--seconds") + 1] || 5) || 5;
const VALUE = Buffer.alloc(256, 7);

interface Run {
  clients: number;
  writesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(clients: number, write: (i: number, n: number) => Promise<void>): Promise<Run> {
  const latencies: number[] = [];
  let errors = 0;
  const endAt = Date.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      while (Date.now() < endAt) {
        const start = performance.now();
        try {
          await write(i, n++);
          latencies.push(performance.now() - start);
        } catch {
          errors++;
        }
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x * 100) / 100;
  return { clients, writesPerSecond: Math.round(latencies.length / seconds), p50Ms: round(percentile(latencies, 50)), p99Ms: round(percentile(latencies, 99)), errors };
}

async function shoal(): Promise<Run[]> {
  const cluster = new ProcessCluster([]);
  try {
    const [m1] = await Promise.all(["m1", "m2", "m3"].map((n) => cluster.add(n)));
    const { managerToken } = await cluster.init("m1");
    await cluster.join("m2", managerToken, m1!.addr);
    await cluster.join("m3", managerToken, m1!.addr);
    await waitFor("3 voters", async () => (await m1!.client.listNodes()).filter((n) => n.managerStatus?.voter).length === 3 || undefined, 30_000);
    const leader = await cluster.leader();
    const pool = Array.from({ length: 16 }, () => leader.newControlClient());
    const runs: Run[] = [];
    for (const clients of [1, 256]) {
      runs.push(await measure(clients, async (i, n) => void (await leader.putValue(`bench-${i}-${n % 1000}`, VALUE, 10_000, pool[i % pool.length]))));
    }
    for (const c of pool) c.close();
    return runs;
  } finally {
    await cluster.close();
  }
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

function bytesField(field: number, bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(field << 3) | 2]), varint(bytes.length), bytes]);
}

function haveEtcd(): boolean {
  try {
    execFileSync("etcd", ["--version"], { stdio: "ignore" });
    execFileSync("etcdctl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** A 3-member etcd with TLS (peer and client) from an openssl-made CA, all on 127.0.0.1. */
async function etcd(): Promise<Run[] | undefined> {
  if (!haveEtcd()) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "shoal-bench-etcd-"));
  const children: ChildProcess[] = [];
  try {
    const ssl = (args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    ssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    ssl(["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench-ca", "-days", "2", "-out", "ca.crt"]);
    writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
    ssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "node.key"]);
    ssl(["req", "-new", "-key", "node.key", "-subj", "/CN=etcd", "-out", "node.csr"]);
    ssl(["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "node.crt"]);
    const ports = await Promise.all(Array.from({ length: 6 }, () => freePort()));
    const names = ["e1", "e2", "e3"];
    const initialCluster = names.map((n, i) => `${n}=https://127.0.0.1:${ports[i * 2 + 1]}`).join(",");
    const tls = (prefix: string): string[] => [`--${prefix}cert-file=${dir}/node.crt`, `--${prefix}key-file=${dir}/node.key`, `--${prefix}trusted-ca-file=${dir}/ca.crt`, `--${prefix}client-cert-auth`];
    names.forEach((name, i) => {
      const client = `https://127.0.0.1:${ports[i * 2]}`;
      const peer = `https://127.0.0.1:${ports[i * 2 + 1]}`;
      children.push(
        spawn("etcd", [
          `--name=${name}`, `--data-dir=${dir}/${name}`, `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
          `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=${initialCluster}`,
          "--initial-cluster-state=new", "--log-level=error", ...tls(""), ...tls("peer-"),
        ], { stdio: "ignore" }),
      );
    });
    const endpoints = names.map((_, i) => `https://127.0.0.1:${ports[i * 2]}`).join(",");
    const ctlArgs = [`--endpoints=${endpoints}`, `--cacert=${dir}/ca.crt`, `--cert=${dir}/node.crt`, `--key=${dir}/node.key`];
    await waitFor("etcd to be healthy", () => {
      try {
        execFileSync("etcdctl", [...ctlArgs, "endpoint", "health"], { stdio: "ignore" });
        return true;
      } catch {
        return undefined;
      }
    }, 30_000, 200);
    // etcd's KV.Put over gRPC with mutual TLS, hand-encoded (PutRequest: key = 1, value = 2), so both
    // systems are driven the same way: one gRPC call per write, 1 or 256 in flight.
    const put = {
      path: "/etcdserverpb.KV/Put",
      requestStream: false,
      responseStream: false,
      requestSerialize: (r: { key: Buffer; value: Buffer }): Buffer => Buffer.concat([bytesField(1, r.key), bytesField(2, r.value)]),
      requestDeserialize: (b: Buffer): Buffer => b,
      responseSerialize: (b: Buffer): Buffer => b,
      responseDeserialize: (b: Buffer): Buffer => b,
    };
    const KvClient = grpc.makeGenericClientConstructor({ put }, "KV");
    const creds = grpc.credentials.createSsl(readFileSync(`${dir}/ca.crt`), readFileSync(`${dir}/node.key`), readFileSync(`${dir}/node.crt`));
    const leaderEndpoint = names.map((_, i) => `127.0.0.1:${ports[i * 2]}`);
    const pool = Array.from({ length: 16 }, (_, i) => new KvClient(leaderEndpoint[i % 3]!, creds, { "grpc.ssl_target_name_override": "localhost" }) as unknown as grpc.Client & { put: (r: unknown, cb: (e: unknown) => void) => void });
    const runs: Run[] = [];
    for (const clients of [1, 256]) {
      runs.push(
        await measure(clients, (i, n) =>
          new Promise<void>((ok, fail) => pool[clients === 1 ? 0 : i % pool.length]!.put({ key: Buffer.from(`bench-${i}-${n % 1000}`), value: VALUE }, (e) => (e ? fail(e) : ok()))),
        ),
      );
    }
    for (const c of pool) c.close();
    return runs;
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

const shoalRuns = await shoal();
const etcdRuns = await etcd().catch((err: unknown) => {
  process.stderr.write(`etcd comparison skipped: ${err instanceof Error ? err.message : String(err)}\n`);
  return undefined;
});
const out: Record<string, unknown> = { bench: "cluster-write", seconds, valueBytes: VALUE.length, shoal: shoalRuns };
if (etcdRuns !== undefined) {
  out["etcd"] = etcdRuns;
  out["ratioShoalToEtcd1Client"] = Math.round((shoalRuns[0]!.writesPerSecond / Math.max(1, etcdRuns[0]!.writesPerSecond)) * 100) / 100;
  out["ratioShoalToEtcd256Clients"] = Math.round((shoalRuns[1]!.writesPerSecond / Math.max(1, etcdRuns[1]!.writesPerSecond)) * 100) / 100;
} else {
  out["etcd"] = "not installed (apt-get install -y etcd-server etcd-client)";
}
process.stdout.write(JSON.stringify(out) + "\n");
