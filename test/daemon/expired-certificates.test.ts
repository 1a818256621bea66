// Nodes whose certificates expired while they were down (issue 11, moby/moby#24132, #42660), with
// in-process daemons (real gRPC over mTLS on 127.0.0.1, LevelDB in temp dirs) whose clock is the
// system clock shifted forward, so that a 1-hour certificate is past its NotAfter without waiting:
// - a worker stops at start with CERT_EXPIRED and the way back (join again), and dials no manager;
// - the last manager refuses without --renew-expired and, with it, reissues its own certificate
//   (same node ID, role, zone, cluster; new serial in the store; logged without key material), also
//   after unlock with autolock on;
// - a removed manager (node rm --force while it was down) and a manager whose own store revokes it
//   are refused the --renew-expired path.
// The `shoal daemon` process itself exits 4 (CERT_EXPIRED) on an expired certificate: see the end.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { ManualClock, systemClock, type Clock } from "../../src/base/clock.js";
import { createNodeKeyAndCsr, createRootCA, parseNodeCertificate, RootCA, verifyNodeCertificate, type NodeRole } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon, type DaemonOptions } from "../../src/daemon/daemon.js";
import { writeNodeFile } from "../../src/daemon/node-file.js";
import { isNodeKeyEncrypted, readNodeKey, writeNodeKey } from "../../src/storage/index.js";
import { NodeAvailability, NodeRole as ProtoNodeRole, type Cluster } from "../../src/proto/shoal/v1/objects.js";
import { freePort, REPO_ROOT, waitFor } from "../e2e/cluster.js";

const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };
const HOUR_MS = 3600_000;
const initRequest = { autolock: false, certExpirySeconds: 3600n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 };
const joinRequest = (token: string, remoteAddr: string) => ({ token, remoteAddr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });

/** The system clock and timers, with time read `offsetMs` ahead. */
function shiftedClock(offsetMs: number): Clock {
  return { ...systemClock, nowMs: () => Date.now() + offsetMs };
}

/** A logger that keeps every line (to check what was logged, and that no key material was). */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString("utf8").split("\n").filter((l) => l !== ""));
      cb();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

interface TestNode {
  dir: string;
  addr: string;
  daemon?: Daemon;
  client?: DaemonClient;
}

async function start(n: TestNode, extra: Partial<DaemonOptions> = {}): Promise<Daemon> {
  const daemon = await startDaemon({ dataDir: n.dir, listenAddr: n.addr, logger: pino({ level: "silent" }), raftTiming: FAST, heartbeatPeriodMs: 300, ...extra });
  n.daemon = daemon;
  n.client = new DaemonClient(daemon.socketPath);
  return daemon;
}

async function stop(n: TestNode): Promise<void> {
  n.client?.close();
  await n.daemon?.stop();
  n.client = undefined;
  n.daemon = undefined;
}

async function newNode(root: string, name: string): Promise<TestNode> {
  return { dir: join(root, name), addr: `127.0.0.1:${await freePort()}` };
}

function certOnDisk(n: TestNode) {
  return parseNodeCertificate(readFileSync(join(n.dir, "certificates/node.crt"), "utf8"));
}

/** A TCP listener that counts the connections made to it (a stand-in for a manager's address). */
async function countingListener(): Promise<{ server: Server; addr: string; connections: () => number }> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return { server, addr: `127.0.0.1:${port}`, connections: () => count };
}

function tempRoot(t: { after: (fn: () => Promise<void> | void) => void }, nodes: TestNode[]): string {
  const root = mkdtempSync(join(tmpdir(), "shoal-expired-"));
  t.after(async () => {
    for (const n of nodes) await stop(n).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
  return root;
}

test("a worker restarted after its certificate expired stops with CERT_EXPIRED and the way back, and dials no manager", { timeout: 60_000 }, async (t) => {
  const nodes: TestNode[] = [];
  const root = tempRoot(t, nodes);
  const m = await newNode(root, "m");
  const w = await newNode(root, "w");
  nodes.push(m, w);
  await start(m);
  const init = await m.client!.init(initRequest);
  await start(w);
  await w.client!.join(joinRequest(init.workerToken, m.addr));
  const workerId = (await w.client!.info()).nodeId;
  await stop(w);

  // Where the worker would dial on restart: a listener that counts connections.
  const fake = await countingListener();
  t.after(() => void fake.server.close());
  const nodeFile = join(w.dir, "node.json");
  const meta = JSON.parse(readFileSync(nodeFile, "utf8")) as { managers: string[] };
  meta.managers = [fake.addr];
  writeFileSync(nodeFile, JSON.stringify(meta));

  // Two hours later by its clock: the 1-hour certificate expired while it was down.
  const later = shiftedClock(2 * HOUR_MS);
  await assert.rejects(start(w, { clock: later }), (e) => {
    assert.ok(isShoalError(e, "CERT_EXPIRED"), String(e));
    const message = (e as Error).message;
    assert.match(message, /expired at .* while the node was down/);
    assert.match(message, /shoal join --token/);
    assert.match(message, /new node ID/);
    assert.ok(message.includes(`shoal node rm ${workerId}`), message);
    assert.ok(message.includes(join(w.dir, "certificates")), message);
    return true;
  });
  // No connection loop: nothing dialled the manager address, and no daemon is left running.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(fake.connections(), 0, "the expired worker dialled a manager");
  assert.equal(existsSync(join(w.dir, "shoal.sock")), false);
  // The data dir is free again (the lock was released) and the certificate is untouched.
  await assert.rejects(start(w, { clock: later }), (e) => isShoalError(e, "CERT_EXPIRED"));
  assert.equal(certOnDisk(w).nodeId, workerId);

  // The documented way back: wipe what leave removes, join again (a new node ID), node rm the old one.
  rmSync(join(w.dir, "certificates"), { recursive: true });
  rmSync(nodeFile);
  await start(w, { clock: later });
  assert.equal((await w.client!.info()).state, "inactive");
  await stop(w);
  // (the manager's clock is the real one here: the new join works in real time)
  await start(w);
  await w.client!.join(joinRequest(init.workerToken, m.addr));
  const newId = (await w.client!.info()).nodeId;
  assert.notEqual(newId, workerId);
  await m.client!.removeNode({ nodeId: workerId, force: true });
  const ids = (await m.client!.listNodes()).map((n) => n.id);
  assert.ok(!ids.includes(workerId) && ids.includes(newId));
});

test("the last manager: refused without --renew-expired, renewed with it (same identity, new serial), and starts normally", { timeout: 90_000 }, async (t) => {
  const nodes: TestNode[] = [];
  const root = tempRoot(t, nodes);
  const m = await newNode(root, "m");
  nodes.push(m);
  await start(m);
  const init = await m.client!.init(initRequest);
  // In zone "blue" (the store's label; the certificate follows on renewal): the zone is kept too.
  const self = await m.client!.getNode(init.nodeId);
  await m.client!.updateNode({ nodeId: init.nodeId, nodeVersion: self.meta!.version, spec: { ...self.spec!, labels: { ...self.spec!.labels, zone: "blue" } } });
  await waitFor("the certificate to carry zone blue", () => certOnDisk(m).zone === "blue" || undefined, 15_000);
  const before = certOnDisk(m);
  assert.equal(before.zone, "blue");
  await stop(m);

  // Just over an hour later by its clock: expired; the new certificate (NotBefore backdated 1 h) is
  // valid in real time 3 s later, so the manager's own agent can connect over real TLS.
  const later = shiftedClock(HOUR_MS + 3000);
  await assert.rejects(start(m, { clock: later }), (e) => {
    assert.ok(isShoalError(e, "CERT_EXPIRED"), String(e));
    assert.match((e as Error).message, /--renew-expired/);
    assert.match((e as Error).message, /node rm --force/);
    return true;
  });
  assert.equal(certOnDisk(m).serial, before.serial, "nothing changed on a refusal");

  const { logger, lines } = capturingLogger();
  await start(m, { clock: later, renewExpired: true, logger });
  assert.equal(m.daemon!.currentState, "manager");
  const after = certOnDisk(m);
  assert.notEqual(after.serial, before.serial);
  assert.deepEqual(
    { nodeId: after.nodeId, clusterId: after.clusterId, role: after.role, zone: after.zone },
    { nodeId: before.nodeId, clusterId: before.clusterId, role: "swarm-manager" as NodeRole, zone: before.zone },
  );
  const rootCA = RootCA.fromCertOnly(readFileSync(join(m.dir, "certificates/root-ca.crt"), "utf8"));
  verifyNodeCertificate(readFileSync(join(m.dir, "certificates/node.crt"), "utf8"), { rootCA, clock: later, clusterId: init.clusterId, roles: ["swarm-manager"] });
  // The store records the new certificate (and keeps the old serial for revocation).
  const record = (await m.client!.getNode(init.nodeId)).certificate!;
  assert.equal(record.serial, after.serial);
  assert.ok(record.issuedSerials.includes(before.serial));
  // Logged, without key material.
  const renewedLine = lines.find((l) => l.includes("reissued its own expired certificate"));
  assert.ok(renewedLine, "the renewal is logged");
  assert.ok(renewedLine.includes(after.serial) && renewedLine.includes(before.serial));
  assert.ok(!lines.some((l) => /PRIVATE KEY|BEGIN /.test(l)), "no key material in the log");
  // Starts normally: its agent connects with the new certificate, control calls work.
  await waitFor("the manager's agent to connect", () => m.daemon!.nodeAgent?.isConnected || undefined, 20_000);
  const info = await m.client!.info();
  assert.equal(info.state, "active");
  assert.equal(info.role, ProtoNodeRole.NODE_ROLE_MANAGER);
  await stop(m);
  // And next time it starts without the flag.
  await start(m, { clock: later });
  assert.equal(m.daemon!.currentState, "manager");
});

test("the last manager with autolock: refused before unlock without the flag; with it, renewed after unlock, the key stays wrapped", { timeout: 90_000 }, async (t) => {
  const nodes: TestNode[] = [];
  const root = tempRoot(t, nodes);
  const m = await newNode(root, "m");
  nodes.push(m);
  await start(m);
  const init = await m.client!.init({ ...initRequest, autolock: true });
  const before = certOnDisk(m);
  await stop(m);

  const later = shiftedClock(HOUR_MS + 3000);
  await assert.rejects(start(m, { clock: later }), (e) => isShoalError(e, "CERT_EXPIRED") && /--renew-expired/.test((e as Error).message));

  await start(m, { clock: later, renewExpired: true });
  assert.equal(m.daemon!.currentState, "locked");
  assert.equal(certOnDisk(m).serial, before.serial, "nothing is renewed before unlock");
  await assert.rejects(m.client!.unlock({ unlockKey: "SWMKEY-1-" + Buffer.alloc(32, 7).toString("base64").replace(/=+$/, "") }), (e) => isShoalError(e, "UNLOCK_KEY_WRONG"));
  assert.equal(m.daemon!.currentState, "locked");
  await m.client!.unlock({ unlockKey: init.unlockKey });
  assert.equal(m.daemon!.currentState, "manager");
  const after = certOnDisk(m);
  assert.notEqual(after.serial, before.serial);
  assert.equal(after.nodeId, before.nodeId);
  assert.equal(after.role, "swarm-manager");
  // The new key is written wrapped under the unlock key, as autolock requires.
  const keyFile = join(m.dir, "certificates/node.key");
  assert.ok(await isNodeKeyEncrypted(keyFile));
  await readNodeKey(keyFile, init.unlockKey);
  await waitFor("the manager's agent to connect", () => m.daemon!.nodeAgent?.isConnected || undefined, 20_000);
  await stop(m);
  await start(m, { clock: later });
  assert.equal(m.daemon!.currentState, "locked");
});

test("a removed manager cannot use --renew-expired: not the last manager, or revoked in its own store", { timeout: 120_000 }, async (t) => {
  const nodes: TestNode[] = [];
  const root = tempRoot(t, nodes);
  const [m1, m2, m3] = [await newNode(root, "m1"), await newNode(root, "m2"), await newNode(root, "m3")];
  nodes.push(m1, m2, m3);
  await start(m1);
  const init = await m1.client!.init(initRequest);
  for (const n of [m2, m3]) {
    await start(n);
    await n.client!.join(joinRequest(init.managerToken, m1.addr));
  }
  await waitFor("three voters", async () => ((await m1.client!.info()).managers.length === 3 || undefined), 20_000);
  const m3Id = (await m3.client!.info()).nodeId;
  const m3Serial = certOnDisk(m3).serial;
  await stop(m3);
  await waitFor("m3 removed", async () => {
    try {
      await m1.client!.removeNode({ nodeId: m3Id, force: true });
      return true;
    } catch {
      return undefined;
    }
  }, 20_000);

  // Its own state still lists three managers: the last-manager path is refused at once.
  const later = shiftedClock(2 * HOUR_MS);
  await assert.rejects(start(m3, { clock: later, renewExpired: true }), (e) => {
    assert.ok(isShoalError(e, "FAILED_PRECONDITION"), String(e));
    assert.match((e as Error).message, /only for a cluster's last manager/);
    return true;
  });
  assert.equal(certOnDisk(m3).serial, m3Serial, "no certificate was issued");
  assert.ok(!(await m1.client!.listNodes()).some((n) => n.id === m3Id), "the removed node did not come back");

  // A single manager whose own store has its certificate revoked (the agent is stopped first, so
  // the daemon does not wipe itself on the revocation): refused with CERT_REVOKED.
  const s = await newNode(root, "s");
  nodes.push(s);
  await start(s);
  const sInit = await s.client!.init(initRequest);
  const sSerial = certOnDisk(s).serial;
  await s.daemon!.nodeAgent!.stop();
  const manager = s.daemon!.nodeManager!;
  const cluster = manager.store.getCluster()!;
  const revoked: Cluster = {
    ...cluster,
    revocationList: { nodes: [...(cluster.revocationList?.nodes ?? []), { nodeId: sInit.nodeId, serials: [sSerial], removedAt: new Date(), lastCertNotAfter: new Date(Date.now() + HOUR_MS) }] },
  };
  await manager.ctx.propose((tx) => tx.updateCluster(revoked));
  await stop(s);
  await assert.rejects(start(s, { clock: later, renewExpired: true }), (e) => isShoalError(e, "CERT_REVOKED"));
  assert.equal(certOnDisk(s).serial, sSerial);
});

/** A data dir holding a certificate that really expired (issued 3 h ago for 1 h), for the CLI. */
async function expiredDataDir(dir: string, role: NodeRole): Promise<string> {
  const past = new ManualClock(Date.now() - 3 * HOUR_MS);
  const rootCA = await createRootCA({ clock: past });
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const nodeId = "a".repeat(25);
  const clusterId = "b".repeat(25);
  const issued = rootCA.issueNodeCertificate({ csrPem, nodeId, role, clusterId, validityMs: HOUR_MS, clock: past });
  mkdirSync(join(dir, "certificates"), { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "certificates/root-ca.crt"), rootCA.certPem);
  writeFileSync(join(dir, "certificates/node.crt"), issued.certPem);
  await writeNodeKey(join(dir, "certificates/node.key"), privateKey);
  await writeNodeFile(dir, { nodeId, clusterId, raftId: role === "swarm-manager" ? "7" : "", advertiseAddr: "127.0.0.1:1", autolock: false, managers: ["127.0.0.1:1"], raftTiming: FAST });
  return nodeId;
}

function runDaemonProcess(dir: string, extra: string[] = []): Promise<{ code: number | null; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const began = Date.now();
    void freePort().then((port) => {
      const child = spawn(process.execPath, [join(REPO_ROOT, "bin", "shoal.js"), "--data-dir", dir, "daemon", "--listen-addr", `127.0.0.1:${port}`, ...extra], {
        cwd: REPO_ROOT,
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, SHOAL_SOCKET: "" },
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`shoal daemon did not exit within 20 s; stderr: ${stderr}`));
      }, 20_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr, ms: Date.now() - began });
      });
    });
  });
}

test("`shoal daemon` on an expired certificate exits 4 (CERT_EXPIRED) with the way back, worker and manager", { timeout: 60_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-expired-cli-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const workerDir = join(root, "w");
  const workerId = await expiredDataDir(workerDir, "swarm-worker");
  const worker = await runDaemonProcess(workerDir);
  assert.equal(worker.code, 4, worker.stderr);
  assert.match(worker.stderr, /worker's certificate .* expired/);
  assert.match(worker.stderr, /shoal join --token/);
  assert.ok(worker.stderr.includes(`shoal node rm ${workerId}`), worker.stderr);

  const managerDir = join(root, "m");
  await expiredDataDir(managerDir, "swarm-manager");
  const manager = await runDaemonProcess(managerDir);
  assert.equal(manager.code, 4, manager.stderr);
  assert.match(manager.stderr, /manager's certificate .* expired/);
  assert.match(manager.stderr, /shoal daemon --renew-expired/);
  // The flag on a worker does not help it: the same refusal.
  const workerWithFlag = await runDaemonProcess(workerDir, ["--renew-expired"]);
  assert.equal(workerWithFlag.code, 4, workerWithFlag.stderr);
});
