// `--metrics-addr` on real daemons in this process (gRPC over mTLS on 127.0.0.1, LevelDB in temp
// dirs), scraped over HTTP and parsed: the values move with the cluster (commit index after writes,
// a service's tasks by state, the certificate's expiry within its validity, raft and scheduler
// histograms); other paths are 404; a full scrape of a manager holding a secret, a registry login,
// join tokens and an unlock key carries none of them; a locked manager shows only its process and
// lock state until it is unlocked.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon, type DaemonOptions } from "../../src/daemon/daemon.js";
import { ServiceSpec } from "../../src/proto/shoal/v1/objects.js";
import { freePort, waitFor } from "../e2e/cluster.js";
import { startFakeRegistry } from "../oci/fake-registry.js";
import { parseSamples, scrape, scrapeText, sumOf, valueOf } from "./metrics-scrape.js";

const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };
const silent = pino({ level: "silent" });
/** On tmpfs, as secret files must be; one directory per data dir. */
const secretsRootOf = (dir: string): string => `/dev/shm/shoal-test-metrics-${process.pid}-${dir.split("/").slice(-2).join("-")}`;

async function startManager(dir: string, extra: Partial<DaemonOptions> = {}): Promise<{ daemon: Daemon; client: DaemonClient; port: number }> {
  const daemon = await startDaemon({
    dataDir: dir,
    listenAddr: `127.0.0.1:${await freePort()}`,
    logger: silent,
    raftTiming: FAST,
    heartbeatPeriodMs: 300,
    secretsRoot: secretsRootOf(dir),
    metricsAddr: "127.0.0.1:0",
    ...extra,
  });
  assert.ok(daemon.metricsPort !== undefined && daemon.metricsPort > 0, "the metrics port is reported");
  return { daemon, client: new DaemonClient(daemon.socketPath), port: daemon.metricsPort };
}

test("metrics: a manager's scrape moves with its cluster; other paths are 404", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-metrics-"));
  const m = await startManager(join(root, "m"));
  t.after(async () => {
    m.client.close();
    await m.daemon.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(secretsRootOf(join(root, "m")), { recursive: true, force: true });
  });

  // Not in a cluster yet: process and lock state only.
  let samples = await scrape(m.port);
  assert.equal(valueOf(samples, "shoal_node_state", { state: "inactive" }), 1);
  assert.equal(valueOf(samples, "shoal_node_locked"), 0);
  assert.equal(valueOf(samples, "shoal_raft_term"), undefined);
  assert.ok((valueOf(samples, "process_resident_memory_bytes") ?? 0) > 0, "RSS");
  assert.ok(valueOf(samples, "process_cpu_seconds_total") !== undefined, "process CPU");
  assert.ok(valueOf(samples, "nodejs_eventloop_lag_seconds") !== undefined, "event-loop lag");

  await m.client.init({ autolock: false, certExpirySeconds: 3600n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  samples = await waitFor("the manager's own agent to hold a session", async () => {
    const s = await scrape(m.port);
    return (valueOf(s, "shoal_dispatcher_sessions") ?? 0) >= 1 ? s : undefined;
  });
  assert.equal(valueOf(samples, "shoal_node_state", { state: "manager" }), 1);
  assert.ok((valueOf(samples, "shoal_raft_term") ?? 0) >= 1);
  assert.equal(valueOf(samples, "shoal_raft_role", { role: "leader" }), 1);
  assert.equal(valueOf(samples, "shoal_raft_role", { role: "follower" }), 0);
  assert.ok((valueOf(samples, "shoal_raft_leader_changes_total") ?? 0) >= 1, "becoming leader is a leader change");
  assert.equal(valueOf(samples, "shoal_nodes", { state: "ready", zone: "default" }), 1);
  // A 1-hour certificate issued just now: its expiry is within its validity.
  const expiry = valueOf(samples, "shoal_node_certificate_expiry_seconds")!;
  assert.ok(expiry > 3000 && expiry <= 3600, `certificate expiry ${expiry} s`);
  assert.equal(valueOf(samples, "shoal_ca_revocation_list_entries", { kind: "node" }), 0);
  const commitBefore = valueOf(samples, "shoal_raft_commit_index")!;
  const proposalsBefore = valueOf(samples, "shoal_raft_proposal_duration_seconds_count", { outcome: "applied" }) ?? 0;

  // Writes: a service of 3 process tasks, placed on the manager's own agent and run.
  await m.client.createService({ spec: ServiceSpec.fromPartial({ name: "sleepers", replicas: 3, container: { command: ["sleep", "300"] } }) });
  samples = await waitFor(
    "3 running tasks in the scrape",
    async () => {
      const s = await scrape(m.port);
      return valueOf(s, "shoal_tasks", { state: "running" }) === 3 ? s : undefined;
    },
    30_000,
  );
  assert.equal(sumOf(samples, "shoal_tasks"), 3, "every task is counted once, in one state");
  assert.equal(valueOf(samples, "shoal_tasks", { state: "failed" }), 0, "states without tasks are exported as 0");
  assert.ok(valueOf(samples, "shoal_raft_commit_index")! > commitBefore, "the commit index grew with the writes");
  assert.ok(valueOf(samples, "shoal_raft_applied_index")! >= valueOf(samples, "shoal_raft_commit_index")! - 1);
  assert.ok(valueOf(samples, "shoal_raft_proposal_duration_seconds_count", { outcome: "applied" })! > proposalsBefore);
  assert.ok(valueOf(samples, "shoal_raft_persist_duration_seconds_count")! > 0);
  assert.ok(valueOf(samples, "shoal_raft_ready_entries_count")! > 0);
  assert.ok(valueOf(samples, "shoal_raft_ready_entries_sum")! >= valueOf(samples, "shoal_raft_ready_entries_count")!);
  assert.ok((valueOf(samples, "shoal_scheduler_decisions_total", { outcome: "assigned" }) ?? 0) >= 3);
  assert.ok(valueOf(samples, "shoal_scheduler_pass_duration_seconds_count")! >= 1);

  // Only GET /metrics is served.
  assert.equal((await scrapeText(m.port, "/")).status, 404);
  assert.equal((await scrapeText(m.port, "/metrics/x")).status, 404);
  assert.equal((await scrapeText(m.port, "/metrics", "POST")).status, 404);
  const ok = await scrapeText(m.port);
  assert.equal(ok.status, 200);
  assert.match(ok.contentType, /^text\/plain; version=0\.0\.4/);
  // Every sample line parses and no label carries an ID (bounded cardinality).
  for (const s of parseSamples(ok.text)) for (const v of Object.values(s.labels)) assert.ok(!/^[0-9a-z]{25}$/.test(v), `label value ${v} of ${s.name} looks like an object ID`);
});

test("metrics: a manager with secrets, a registry login, join tokens and an unlock key exports none of them; locked, only process and lock state", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-metrics-secret-"));
  const dir = join(root, "m");
  const PASSWORD = "reg-pass-metrics-7c1f0e";
  const registry = await startFakeRegistry({ auth: { scheme: "basic", username: "dora", password: PASSWORD } });
  let m = await startManager(dir);
  t.after(async () => {
    m.client.close();
    await m.daemon.stop();
    await registry.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(secretsRootOf(dir), { recursive: true, force: true });
  });
  const init = await m.client.init({ autolock: true, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const SECRET = "s3cr3t-metrics-payload-41d9";
  const secret = await m.client.createSecret({ spec: { name: "db-password", data: Buffer.from(SECRET), zone: "", labels: {} } });
  await m.client.registryLogin({ registry: registry.host, username: "dora", password: Buffer.from(PASSWORD), caPem: "" });
  assert.equal((await m.client.listRegistries()).length, 1, "the login is stored");
  await m.client.createService({ spec: ServiceSpec.fromPartial({ name: "uses-secret", replicas: 1, container: { command: ["sleep", "300"], secrets: [{ secretId: secret.id, secretName: "db-password", target: "db" }] } }) });
  await waitFor("the task to run", async () => valueOf(await scrape(m.port), "shoal_tasks", { state: "running" }) === 1 || undefined, 30_000);

  const cluster = m.daemon.nodeManager!.store.getCluster()!;
  const caKeyBody = Buffer.from(cluster.rootCa!.caKeyPem).toString("utf8").split("\n").filter((l) => l !== "" && !l.startsWith("-----"));
  const nodeKeyBody = readFileSync(join(dir, "certificates/node.key"), "utf8").split("\n").filter((l) => l !== "" && !l.startsWith("-----"));
  const forbidden: Record<string, string> = {
    "worker join token": init.workerToken,
    "manager join token": init.managerToken,
    "worker token secret part": init.workerToken.split("-").at(-1)!,
    "manager token secret part": init.managerToken.split("-").at(-1)!,
    "unlock key": init.unlockKey,
    "unlock key bytes": init.unlockKey.replace(/^SWMKEY-1-/, ""),
    "secret data": SECRET,
    "secret data (base64)": Buffer.from(SECRET).toString("base64"),
    "registry password": PASSWORD,
    "registry Basic credentials": Buffer.from(`dora:${PASSWORD}`).toString("base64"),
    "secret MAC key (hex)": Buffer.from(cluster.secretMacKey).toString("hex"),
    "secret MAC key (base64)": Buffer.from(cluster.secretMacKey).toString("base64"),
    ...Object.fromEntries(caKeyBody.map((line, i) => [`root CA key line ${i}`, line])),
    ...Object.fromEntries(nodeKeyBody.map((line, i) => [`node key line ${i}`, line])),
  };
  assert.ok(init.unlockKey.startsWith("SWMKEY-1-") && init.workerToken.startsWith("SWMTKN-1-"));
  const text = (await scrapeText(m.port)).text;
  assert.ok(parseSamples(text).length > 50, "a full scrape");
  for (const [what, value] of Object.entries(forbidden)) {
    assert.ok(value.length >= 16, `${what} is long enough to search for`);
    assert.ok(!text.includes(value), `the scrape carries the ${what}`);
  }

  // Restarted with autolock on: locked, serving only process and lock-state metrics.
  m.client.close();
  await m.daemon.stop();
  m = await startManager(dir);
  assert.equal(m.daemon.currentState, "locked");
  let samples = await scrape(m.port);
  assert.equal(valueOf(samples, "shoal_node_locked"), 1);
  assert.equal(valueOf(samples, "shoal_node_state", { state: "locked" }), 1);
  assert.ok(valueOf(samples, "process_resident_memory_bytes") !== undefined);
  const shoalNames = new Set(samples.map((s) => s.name).filter((n) => n.startsWith("shoal_")));
  assert.deepEqual([...shoalNames].sort(), ["shoal_node_locked", "shoal_node_state"]);
  await assert.rejects(m.client.unlock({ unlockKey: "SWMKEY-1-" + "A".repeat(43) }), (e) => isShoalError(e, "UNLOCK_KEY_WRONG"));
  await m.client.unlock({ unlockKey: init.unlockKey });
  samples = await waitFor("raft metrics after unlock", async () => {
    const s = await scrape(m.port);
    return valueOf(s, "shoal_raft_role", { role: "leader" }) === 1 ? s : undefined;
  });
  assert.equal(valueOf(samples, "shoal_node_locked"), 0);
  const after = (await scrapeText(m.port)).text;
  for (const [what, value] of Object.entries(forbidden)) assert.ok(!after.includes(value), `the scrape after unlock carries the ${what}`);
});

test("metrics: --metrics-addr off a loopback host is refused without --metrics-allow-remote, and a taken port is a clear error", { timeout: 30_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-metrics-addr-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const base = { listenAddr: `127.0.0.1:${await freePort()}`, logger: silent };
  // A daemon that starts where it should have been refused is stopped, so the failure ends the test.
  const refused = (opts: DaemonOptions) =>
    startDaemon(opts).then(async (d) => {
      await d.stop();
      return d;
    });
  await assert.rejects(refused({ ...base, dataDir: join(root, "a"), metricsAddr: "0.0.0.0:9323" }), (e) => isShoalError(e, "METRICS_ADDR_NOT_LOOPBACK") && /--metrics-allow-remote/.test(e.message));
  await assert.rejects(refused({ ...base, dataDir: join(root, "b"), metricsAddr: "nonsense" }), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  const remote = await startDaemon({ ...base, dataDir: join(root, "c"), metricsAddr: "0.0.0.0:0", metricsAllowRemote: true });
  try {
    assert.equal((await scrapeText(remote.metricsPort!)).status, 200, "allowed with --metrics-allow-remote");
    await assert.rejects(
      refused({ ...base, listenAddr: `127.0.0.1:${await freePort()}`, dataDir: join(root, "d"), metricsAddr: `127.0.0.1:${remote.metricsPort}` }),
      (e) => isShoalError(e, "UNAVAILABLE") && /cannot listen for metrics/.test(e.message),
    );
  } finally {
    await remote.stop();
  }
  const off = await startDaemon({ ...base, listenAddr: `127.0.0.1:${await freePort()}`, dataDir: join(root, "e") });
  assert.equal(off.metricsPort, undefined, "off by default");
  await off.stop();
});
