// A real Prometheus (Debian's 2.42, installed as root when missing; never skipped) scraping two
// real daemon processes started with `--metrics-addr` on 127.0.0.1, a manager and a worker: both
// targets come up (`up == 1`) and Shoal metrics are queried back through Prometheus's HTTP API.
// And `shoal daemon --metrics-addr` on a non-loopback host exits with the usage code and says which
// flag allows it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHOAL_BIN } from "../../scripts/lib/process-cluster.js";
import { startPrometheus, type LocalPrometheus } from "../../scripts/lib/prometheus.js";
import { EXIT_USAGE } from "../../src/cli/exit-codes.js";
import { freePort, ProcessCluster, waitFor } from "./cluster.js";

test("Prometheus scrapes a manager and a worker: up == 1 for both, and Shoal metrics through its API", { timeout: 180_000 }, async (t) => {
  const cluster = new ProcessCluster();
  let prometheus: LocalPrometheus | undefined;
  t.after(async () => {
    await prometheus?.stop();
    await cluster.close();
  });
  const mPort = await freePort();
  const wPort = await freePort();
  const m1 = await cluster.add("m1", ["--metrics-addr", `127.0.0.1:${mPort}`]);
  const w1 = await cluster.add("w1", ["--metrics-addr", `127.0.0.1:${wPort}`]);
  const tokens = await cluster.init("m1");
  await cluster.join("w1", tokens.workerToken, m1.addr);
  await cluster.waitReady(m1, 2);
  assert.match(m1.readLog(), /serving Prometheus metrics/);

  prometheus = await startPrometheus(
    [
      { job: "shoal-manager", addr: `127.0.0.1:${mPort}` },
      { job: "shoal-worker", addr: `127.0.0.1:${wPort}` },
    ],
    { scrapeIntervalS: 1, log: (line) => t.diagnostic(line) },
  );
  const p = prometheus;
  const up = await waitFor(
    "up == 1 for both targets",
    async () => {
      const result = await p.query("up");
      return result.length === 2 && result.every((r) => r.value[1] === "1") ? result : undefined;
    },
    60_000,
    500,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\nprometheus output:\n${p.output()}`);
  });
  assert.deepEqual(up.map((r) => r.metric["job"]).sort(), ["shoal-manager", "shoal-worker"]);

  // The manager's raft term, read back through Prometheus; the worker has none (it runs no raft).
  const term = await waitFor("shoal_raft_term in Prometheus", async () => {
    const result = await p.query("shoal_raft_term");
    return result.length > 0 ? result : undefined;
  }, 30_000, 500);
  assert.equal(term.length, 1);
  assert.equal(term[0]!.metric["job"], "shoal-manager");
  assert.ok(Number(term[0]!.value[1]) >= 1);
  const nodes = await waitFor("two ready nodes in shoal_nodes", async () => {
    const result = await p.query('sum(shoal_nodes{job="shoal-manager",state="ready"})');
    return result[0]?.value[1] === "2" ? result : undefined;
  }, 30_000, 500);
  assert.equal(nodes.length, 1);
  const roles = await p.query('shoal_node_state{state="worker"} == 1');
  assert.deepEqual(roles.map((r) => r.metric["job"]), ["shoal-worker"]);
  const expiry = await p.query("shoal_node_certificate_expiry_seconds");
  assert.equal(expiry.length, 2, "both nodes export their certificate's expiry");
  for (const e of expiry) assert.ok(Number(e.value[1]) > 0);
});

test("shoal daemon --metrics-addr on a non-loopback host exits with the usage code unless --metrics-allow-remote", { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-metrics-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [SHOAL_BIN, "--data-dir", dir, "daemon", "--listen-addr", `127.0.0.1:1`, ...args], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      // A daemon that starts instead of refusing is killed, so the failure ends the test.
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  const refused = await run(["--metrics-addr", "0.0.0.0:9323"]);
  assert.equal(refused.code, EXIT_USAGE, refused.stderr);
  assert.match(refused.stderr, /loopback/);
  assert.match(refused.stderr, /--metrics-allow-remote/);
});
