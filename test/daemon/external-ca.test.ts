// Node certificates signed by an external CFSSL signer (issue 11, `shoal ca --external-ca`), with
// in-process daemons (real gRPC over mTLS, LevelDB in temp dirs) and a signer over HTTPS on
// 127.0.0.1 verified with its own CA (cacert=): a fake CFSSL in this process that signs with the
// cluster's root key (faithfully, or with another CN, OU, key or zone), and Debian's real
// `cfssl serve`. Every wrong certificate is refused with EXTERNAL_CA_MISMATCH and logged as a
// security event; no node is created; the manager keeps serving. A signer that is down gives
// EXTERNAL_CA_UNAVAILABLE and the join works once it is back.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { systemClock } from "../../src/base/clock.js";
import { createRootCA, normalizeSerial, type RootCA } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { UpdateClusterRequest_Autolock } from "../../src/proto/shoal/v1/control.js";
import { NodeAvailability, NodeRole as ProtoNodeRole, type ExternalCA } from "../../src/proto/shoal/v1/objects.js";
import { findExecutable } from "../../scripts/lib/container-tools.js";
import { freePort, waitFor } from "../e2e/cluster.js";
import { fakeCfssl, tlsIdentity } from "./fake-cfssl.js";

const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };

interface Started {
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
  dir: string;
}

async function node(t: TestContext, root: string, name: string, logLines?: string[]): Promise<Started> {
  const dir = join(root, name);
  const addr = `127.0.0.1:${await freePort()}`;
  const logger = logLines === undefined ? pino({ level: "silent" }) : pino({ level: "info" }, { write: (line: string) => void logLines.push(line) });
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger, raftTiming: FAST, heartbeatPeriodMs: 300 });
  const client = new DaemonClient(daemon.socketPath);
  t.after(async () => {
    client.close();
    await daemon.stop();
  });
  return { daemon, client, addr, dir };
}

/** A one-manager cluster whose root is `root` (imported by a rotation, so the test holds its key). */
async function clusterWithRoot(t: TestContext, dir: string, root: RootCA, logLines: string[]) {
  const m = await node(t, dir, "m1", logLines);
  const init = await m.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  await m.client.rotateRootCa({ caCertPem: Buffer.from(root.certPem), caKeyPem: Buffer.from(root.keyPem!) });
  await waitFor("the rotation to the test's root", async () => (await m.client.getRootCa()).rotation === undefined && (await m.client.getRootCa()).root?.fingerprint === root.fingerprint, 20_000);
  const tokens = {
    worker: (await m.client.getJoinToken({ role: ProtoNodeRole.NODE_ROLE_WORKER, rotate: false, expiresInSeconds: 0n })).token,
    manager: (await m.client.getJoinToken({ role: ProtoNodeRole.NODE_ROLE_MANAGER, rotate: false, expiresInSeconds: 0n })).token,
  };
  return { m, init, tokens };
}

async function setExternalCa(client: DaemonClient, externalCa: ExternalCA | undefined): Promise<void> {
  const cluster = await client.getCluster();
  await client.updateCluster({ clusterVersion: cluster.meta?.version ?? 0n, nodeCertExpirySeconds: 0n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED, updateExternalCa: true, externalCa });
}

function joinRequest(token: string, remoteAddr: string) {
  return { token, remoteAddr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE };
}

function securityEvents(lines: string[]): { code: string; reason: string; nodeId: string }[] {
  return lines.map((l) => JSON.parse(l) as { event?: string; code: string; reason: string; nodeId: string }).filter((l) => l.event === "security" && l.code === "EXTERNAL_CA_MISMATCH");
}

test("a fake CFSSL: good certificates are used, wrong ones refused with EXTERNAL_CA_MISMATCH, a down signer is EXTERNAL_CA_UNAVAILABLE", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-extca-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = await createRootCA({ clock: systemClock });
  const tls = tlsIdentity(dir);
  const logLines: string[] = [];
  const { m, init, tokens } = await clusterWithRoot(t, dir, root, logLines);
  const fake = await fakeCfssl(t, root, tls);

  // Refused settings change nothing.
  for (const [url, pattern] of [
    [fake.url.replace("https:", "http:"), /https/],
    [`https://user:pw@127.0.0.1:1`, /user name or password/],
    [`https://127.0.0.1:1/?token=x`, /query/],
  ] as const) {
    await assert.rejects(setExternalCa(m.client, { protocol: "cfssl", url, caCertPem: Buffer.from(tls.certPem) }), (e) => isShoalError(e, "INVALID_ARGUMENT") && pattern.test((e as Error).message));
  }
  await assert.rejects(setExternalCa(m.client, { protocol: "acme", url: fake.url, caCertPem: Buffer.alloc(0) }), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  assert.equal((await m.client.getRootCa()).externalCa, undefined);

  await setExternalCa(m.client, { protocol: "cfssl", url: fake.url, caCertPem: Buffer.from(tls.certPem) });
  assert.equal((await m.client.getRootCa()).externalCa?.url, fake.url);
  // A generated root is one the signer does not hold: refused.
  await assert.rejects(m.client.rotateRootCa({ caCertPem: Buffer.alloc(0), caKeyPem: Buffer.alloc(0) }), (e) => isShoalError(e, "FAILED_PRECONDITION") && /--ca-cert/.test((e as Error).message));
  assert.equal((await m.client.getRootCa()).rotation, undefined);
  // The expiry changes alone: the external CA stays.
  const cluster = await m.client.getCluster();
  await m.client.updateCluster({ clusterVersion: cluster.meta?.version ?? 0n, nodeCertExpirySeconds: 2160n * 3600n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED });
  assert.equal((await m.client.getRootCa()).externalCa?.url, fake.url);

  const w = await node(t, dir, "w1");
  const workerAsks = () => fake.state.requests.filter((r) => r.hosts[0] === "swarm-worker").length;
  const nodesBefore = (await m.client.listNodes()).length;
  for (const [mode, pattern] of [
    ["other-cn", /names node/],
    ["other-ou", /role/],
    ["other-key", /another public key/],
    ["other-zone", /zone|SPIFFE/],
  ] as const) {
    fake.state.mode = mode;
    const before = workerAsks();
    await assert.rejects(w.client.join(joinRequest(tokens.worker, m.addr)), (e) => isShoalError(e, "EXTERNAL_CA_MISMATCH") && pattern.test((e as Error).message), mode);
    assert.equal(workerAsks(), before + 1, `${mode}: the signer was asked once`);
    assert.equal((await m.client.listNodes()).length, nodesBefore, `${mode}: no node was created`);
    assert.equal((await w.client.info()).state, "inactive", `${mode}: the worker holds no certificate`);
    assert.equal((await m.client.info()).state, "active", `${mode}: the manager keeps running`);
  }
  const events = securityEvents(logLines);
  assert.equal(events.length, 4, "each refusal is a security event");
  assert.ok(logLines.every((l) => !l.includes("PRIVATE KEY")), "no key in the log");

  // What the managers asked for: the store's identity, the zone in the SPIFFE URI.
  const asked = fake.state.requests.find((r) => r.hosts[0] === "swarm-worker")!;
  assert.deepEqual(asked.subject, { CN: asked.hosts[1], names: [{ O: init.clusterId, OU: "swarm-worker" }] });
  assert.equal(asked.hosts[2], `spiffe://${init.clusterId}/zone/default/swarm-worker/${asked.hosts[1]}`);

  fake.state.mode = "error";
  await assert.rejects(w.client.join(joinRequest(tokens.worker, m.addr)), (e) => isShoalError(e, "EXTERNAL_CA_UNAVAILABLE") && /Invalid request/.test((e as Error).message));

  // Down: refused, the join fails; back: the same worker joins.
  fake.state.mode = "good";
  await fake.stop();
  await assert.rejects(w.client.join(joinRequest(tokens.worker, m.addr)), (e) => isShoalError(e, "EXTERNAL_CA_UNAVAILABLE") && /cannot be reached/.test((e as Error).message));
  assert.equal((await m.client.listNodes()).length, nodesBefore);
  await fake.start();
  const joined = await w.client.join(joinRequest(tokens.worker, m.addr));
  const workerCert = new X509Certificate(readFileSync(join(w.dir, "certificates/node.crt")));
  assert.equal(workerCert.subject, `O=${init.clusterId}\nOU=swarm-worker\nCN=${joined.nodeId}`);
  assert.ok(fake.state.serials.includes(normalizeSerial(workerCert.serialNumber)), "the worker's certificate is the one the external CA signed");
  assert.ok(workerCert.verify(root.publicKey));

  // A second manager's certificate comes from the signer too.
  const m2 = await node(t, dir, "m2");
  const joinedManager = await m2.client.join(joinRequest(tokens.manager, m.addr));
  const managerCert = new X509Certificate(readFileSync(join(m2.dir, "certificates/node.crt")));
  assert.equal(managerCert.subject, `O=${init.clusterId}\nOU=swarm-manager\nCN=${joinedManager.nodeId}`);
  assert.ok(fake.state.serials.includes(normalizeSerial(managerCert.serialNumber)));
  await waitFor("both nodes in the store", async () => (await m.client.listNodes()).length === nodesBefore + 2, 10_000);

  // Back to the managers' key: the signer is not asked any more.
  await setExternalCa(m.client, undefined);
  assert.equal((await m.client.getRootCa()).externalCa, undefined);
  const asks = workerAsks();
  const w2 = await node(t, dir, "w2");
  await w2.client.join(joinRequest(tokens.worker, m.addr));
  assert.equal(workerAsks(), asks);
});

/** Debian's `cfssl` (golang-cfssl): installed with apt when missing and we are root; else the test is skipped. */
function ensureCfssl(): string | undefined {
  const found = findExecutable("cfssl");
  if (found !== undefined) return found;
  if (process.getuid?.() !== 0 || findExecutable("apt-get") === undefined) return undefined;
  const r = spawnSync("flock", ["/tmp/shoal-container-tools.lock", "sh", "-c", "command -v cfssl >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q golang-cfssl || { apt-get update -q && apt-get install -y -q golang-cfssl; }; }"], { stdio: "ignore" });
  return r.status === 0 ? findExecutable("cfssl") : undefined;
}

async function startCfssl(t: TestContext, dir: string, root: RootCA, tls: { certFile: string; keyFile: string }): Promise<{ url: string; log: () => string; child: ChildProcess }> {
  writeFileSync(join(dir, "ca.pem"), root.certPem);
  writeFileSync(join(dir, "ca-key.pem"), root.keyPem!, { mode: 0o600 });
  writeFileSync(join(dir, "cfssl.json"), JSON.stringify({ signing: { default: { expiry: "2160h", usages: ["digital signature", "server auth", "client auth"] } } }));
  const port = await freePort();
  const child = spawn("cfssl", ["serve", "-address", "127.0.0.1", "-port", String(port), "-ca", join(dir, "ca.pem"), "-ca-key", join(dir, "ca-key.pem"), "-config", join(dir, "cfssl.json"), "-tls-cert", tls.certFile, "-tls-key", tls.keyFile], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (c: Buffer) => (log += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (log += c.toString()));
  t.after(() => void child.kill("SIGKILL"));
  await waitFor("cfssl serve", async () => log.includes("Now listening"), 10_000);
  return { url: `https://127.0.0.1:${port}`, log: () => log, child };
}

test("a real `cfssl serve` with the cluster root signs the join's certificate; its answer is checked before use", { timeout: 120_000 }, async (t) => {
  const cfssl = ensureCfssl();
  if (cfssl === undefined) {
    t.skip("cfssl is not installed and cannot be installed here (apt-get install -y golang-cfssl, as root)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "shoal-cfssl-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = await createRootCA({ clock: systemClock });
  const tls = tlsIdentity(dir);
  const logLines: string[] = [];
  const { m, init, tokens } = await clusterWithRoot(t, dir, root, logLines);
  const server = await startCfssl(t, dir, root, tls);
  await setExternalCa(m.client, { protocol: "cfssl", url: server.url, caCertPem: Buffer.from(tls.certPem) });

  const w = await node(t, dir, "w1");
  const nodesBefore = (await m.client.listNodes()).length;
  let outcome: unknown;
  try {
    outcome = await w.client.join(joinRequest(tokens.worker, m.addr));
  } catch (err) {
    outcome = err;
  }
  const signed = [...server.log().matchAll(/signed certificate with serial number (\d+)/g)].map((x) => normalizeSerial(BigInt(x[1]!).toString(16)));
  assert.equal(signed.length, 1, "cfssl signed once:\n" + server.log());
  if (outcome instanceof Error) {
    // Debian's cfssl 1.2 writes every `hosts` entry that is not an IP or e-mail address as a DNS
    // name, so the zone's SPIFFE URI comes back as DNS:spiffe://...: not the certificate asked for.
    t.diagnostic(`cfssl's certificate was refused: ${outcome.message}`);
    assert.ok(isShoalError(outcome, "EXTERNAL_CA_MISMATCH"), String(outcome));
    assert.match(outcome.message, /subject alternative names|SPIFFE/);
    const event = securityEvents(logLines).at(-1);
    assert.ok(event !== undefined, "logged as a security event");
    assert.equal((await m.client.listNodes()).length, nodesBefore, "no node was created");
    assert.equal((await w.client.info()).state, "inactive");
    assert.equal((await m.client.info()).state, "active");
  } else {
    // A cfssl that writes URI entries of `hosts` as URI SANs: the worker holds cfssl's certificate.
    t.diagnostic("cfssl's certificate was accepted");
    const cert = new X509Certificate(readFileSync(join(w.dir, "certificates/node.crt")));
    assert.equal(normalizeSerial(cert.serialNumber), signed[0]);
    assert.match(cert.subject, new RegExp(`^O=${init.clusterId}\nOU=swarm-worker\nCN=`));
  }

  // cfssl down: UNAVAILABLE, and nothing was asked of it.
  server.child.kill("SIGKILL");
  await waitFor("cfssl to stop", async () => server.child.exitCode !== null || server.child.signalCode !== null, 5_000);
  const w2 = await node(t, dir, "w2");
  await assert.rejects(w2.client.join(joinRequest(tokens.worker, m.addr)), (e) => isShoalError(e, "EXTERNAL_CA_UNAVAILABLE"));
});
