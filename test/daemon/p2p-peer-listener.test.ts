// Every node serves its image pieces to the peers of its zone (DESIGN.md §3 rule 9), in-process
// daemons on 127.0.0.1 with real mutual TLS and temp dirs: a pure worker on its own listener at
// --listen-addr, a manager on its manager listener. A requester holding a grant signed by the
// cluster CA gets a complete blob's piece; one without a grant, with a grant for another node, from
// another cluster's CA, or asking for another RPC is refused; once the requester is removed from
// the cluster, the worker refuses it too (the list the managers push to its agent). A stopped
// worker's listener is closed. Bad rate flags are refused at start with INVALID_ARGUMENT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, loadRootCA, signGrant, type RootCA } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { PeerClient } from "../../src/agent/p2p/peer-client.js";
import { parseByteRate } from "../../src/daemon/byte-rate.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import type { Manager } from "../../src/manager/manager.js";
import { DispatcherClient } from "../../src/proto/shoal/v1/dispatcher.js";
import { NodeAvailability, NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { createSecureChannel } from "../../src/transport/client.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { freePort, waitFor } from "../e2e/cluster.js";

const silent = pino({ level: "silent" });
const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };
const GUARD_MS = 30_000;

interface Node {
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
  dir: string;
}

async function node(root: string, name: string): Promise<Node> {
  const dir = join(root, name);
  const addr = `127.0.0.1:${await freePort()}`;
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300 });
  return { daemon, client: new DaemonClient(daemon.socketPath), addr, dir };
}

function refusedWith(code: ShoalErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(isShoalError(err, code), `expected ${code}, got ${String(err)}`);
    return true;
  };
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

test("a worker serves a complete blob's piece on its --listen-addr to a node with a grant, and refuses the rest; a manager serves on its own listener", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-daemon-p2p-"));
  const nodes: Node[] = [];
  t.after(async () => {
    for (const n of nodes) {
      n.client.close();
      await n.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  const m = await node(root, "m");
  nodes.push(m);
  const init = await m.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const w = await node(root, "w");
  const requester = await node(root, "r");
  nodes.push(w, requester);
  for (const n of [w, requester]) await n.client.join({ token: init.workerToken, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  const clusterId = init.clusterId;
  assert.equal(w.daemon.workerPeerPort, Number(w.addr.split(":")[1]), "the worker listens at its --listen-addr");
  assert.equal(m.daemon.workerPeerPort, undefined, "a manager has no second listener");

  // The requester is a real node of the cluster: its certificate and key as its daemon keeps them.
  const reqId = (await requester.client.info()).nodeId;
  const identity = { certPem: readFileSync(join(requester.dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(requester.dir, "certificates/node.key"), "utf8") };
  const rootCaPem = readFileSync(join(m.dir, "certificates/root-ca.crt"), "utf8");
  const ca = (m.daemon as unknown as { manager: Manager }).manager.store.getCluster()!.rootCa!;
  const clusterCA: RootCA = loadRootCA(Buffer.from(ca.caCertPem).toString("utf8"), Buffer.from(ca.caKeyPem).toString("utf8"));

  // A complete blob in the worker's and the manager's content stores (a direct pull put it there).
  const blob = Buffer.alloc(200_000);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 13 + (i >> 6)) & 0xff;
  const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
  for (const n of [w, m]) {
    const store = new ContentStore(join(n.dir, "content"));
    await store.open();
    await store.ensure(digest, blob.length, async () => once(blob), "test blob");
  }
  const grant = (nodeId: string, blobDigest = digest): Buffer =>
    signGrant(clusterCA, { jobId: "svc.1.0123456789abcdef", clusterId, zone: "default", nodeId, blobDigest, expiresAtMs: Date.now() + 5 * 60_000 });
  const peers = new PeerClient({ clusterId, rootCaPem, identity, clock: systemClock, roleOf: (addr) => (addr === m.addr ? "swarm-manager" : "swarm-worker") });
  t.after(() => peers.close());

  const have = await peers.have(w.addr, digest, grant(reqId));
  assert.deepEqual({ pieceSize: have.pieceSize, pieceCount: have.pieceCount }, { pieceSize: 4 * 1024 * 1024, pieceCount: 1 });
  assert.deepEqual(await peers.fetchPiece(w.addr, digest, 0, grant(reqId)), blob);
  assert.deepEqual(await peers.fetchPiece(m.addr, digest, 0, grant(reqId)), blob, "the manager serves on its manager listener");

  // Refusals: no grant, another node's grant, a grant for another blob, a blob not held.
  await assert.rejects(peers.fetchPiece(w.addr, digest, 0, Buffer.alloc(0)), refusedWith("GRANT_INVALID"));
  await assert.rejects(peers.have(w.addr, digest, grant(newId())), refusedWith("GRANT_WRONG_NODE"));
  await assert.rejects(peers.have(w.addr, digest, grant(reqId, `sha256:${"e".repeat(64)}`)), refusedWith("GRANT_WRONG_BLOB"));
  const missing = `sha256:${"f".repeat(64)}`;
  await assert.rejects(peers.have(w.addr, missing, grant(reqId, missing)), refusedWith("NOT_FOUND"));

  // A node of another cluster (its own CA) is refused before any handler runs.
  const foreignCA = await createRootCA({ clock: systemClock });
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const foreign = foreignCA.issueNodeCertificate({ csrPem, nodeId: reqId, clusterId, role: "swarm-worker", zone: "default", clock: systemClock });
  const stranger = new PeerClient({ clusterId, rootCaPem, identity: { certPem: foreign.certPem, keyPem: (privateKey as KeyObject).export({ type: "pkcs8", format: "pem" }).toString() }, clock: systemClock });
  t.after(() => stranger.close());
  await assert.rejects(stranger.have(w.addr, digest, grant(reqId)), refusedWith("UNAUTHENTICATED"));

  // The worker's listener serves Blobs and nothing else.
  const channel = createSecureChannel(w.addr, { rootCaPem, ...identity, expectServerRole: "swarm-worker", clusterId });
  t.after(() => channel.close());
  const heartbeat = await new Promise<unknown>((resolve) => channel.client(DispatcherClient).heartbeat({ sessionId: "x" }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => resolve(err)));
  assert.ok(heartbeat !== null && /does not implement|not allowed|denied/.test(fromGrpcError(heartbeat).message), `the dispatcher is not served here (${String(heartbeat)})`);

  // The requester is removed: within a heartbeat the worker's agent has the list, and its listener refuses it.
  await m.client.removeNode({ nodeId: reqId, force: true });
  await waitFor("the worker to refuse the removed node", async () => {
    try {
      await peers.have(w.addr, digest, grant(reqId), { timeoutMs: 5000 });
      return false;
    } catch (err) {
      return isShoalError(err, "CERT_REVOKED") || (isShoalError(err, "PERMISSION_DENIED") && /removed|revoked/.test((err as Error).message));
    }
  }, GUARD_MS, 100);

  // Stopped: the listener is gone.
  await w.daemon.stop();
  const after = new PeerClient({ clusterId, rootCaPem, identity, clock: systemClock });
  t.after(() => after.close());
  await assert.rejects(after.have(w.addr, digest, grant(reqId), { timeoutMs: 5000 }), (e: unknown) => isShoalError(e, "UNAVAILABLE") || isShoalError(e, "TIMEOUT"));
});

test("a promoted worker hands its port to the manager role, which serves the pieces there, and takes it back when demoted", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-daemon-p2p-role-"));
  const nodes: Node[] = [];
  t.after(async () => {
    for (const n of nodes) {
      n.client.close();
      await n.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  const m = await node(root, "m");
  nodes.push(m);
  const init = await m.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const w = await node(root, "w");
  nodes.push(w);
  await w.client.join({ token: init.workerToken, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  const wId = (await w.client.info()).nodeId;
  const rootCaPem = readFileSync(join(m.dir, "certificates/root-ca.crt"), "utf8");
  const ca = (m.daemon as unknown as { manager: Manager }).manager.store.getCluster()!.rootCa!;
  const clusterCA = loadRootCA(Buffer.from(ca.caCertPem).toString("utf8"), Buffer.from(ca.caKeyPem).toString("utf8"));
  // The requester: the manager node's own identity (a manager may fetch pieces too).
  const mId = (await m.client.info()).nodeId;
  const identity = { certPem: readFileSync(join(m.dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(m.dir, "certificates/node.key"), "utf8") };
  const blob = Buffer.from("a layer small enough for one piece");
  const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
  const store = new ContentStore(join(w.dir, "content"));
  await store.open();
  await store.ensure(digest, blob.length, async () => once(blob), "test blob");
  const grant = signGrant(clusterCA, { jobId: "svc.1.0123456789abcdef", clusterId: init.clusterId, zone: "default", nodeId: mId, blobDigest: digest, expiresAtMs: Date.now() + 5 * 60_000 });
  const fetchAs = async (role: "swarm-manager" | "swarm-worker"): Promise<Buffer> => {
    const client = new PeerClient({ clusterId: init.clusterId, rootCaPem, identity, clock: systemClock, roleOf: () => role });
    try {
      return await client.fetchPiece(w.addr, digest, 0, grant, { timeoutMs: 5000 });
    } finally {
      client.close();
    }
  };
  assert.deepEqual(await fetchAs("swarm-worker"), blob);

  const setRole = async (desiredRole: NodeRole): Promise<void> => {
    const current = await m.client.getNode(wId);
    await m.client.updateNode({ nodeId: wId, nodeVersion: current.meta?.version ?? 0n, spec: { ...current.spec!, desiredRole } });
  };
  await setRole(NodeRole.NODE_ROLE_MANAGER);
  await waitFor("w to run the manager role", () => w.daemon.currentState === "manager" && w.daemon.managerPort !== undefined, GUARD_MS);
  assert.equal(w.daemon.workerPeerPort, undefined, "its worker listener made way for the manager's");
  assert.equal(w.daemon.managerPort, Number(w.addr.split(":")[1]));
  assert.deepEqual(await waitFor("the piece from the manager listener", () => fetchAs("swarm-manager"), GUARD_MS), blob);

  await setRole(NodeRole.NODE_ROLE_WORKER);
  await waitFor("w to be a worker with its own listener again", () => w.daemon.currentState === "worker" && w.daemon.workerPeerPort !== undefined, GUARD_MS);
  assert.deepEqual(await waitFor("the piece from the worker listener", () => fetchAs("swarm-worker"), GUARD_MS), blob);
});

test("rate flags: suffixes are binary, 0 is unlimited, and bad values are INVALID_ARGUMENT naming the flag", async () => {
  assert.equal(parseByteRate("0", "--p2p-upload-rate"), 0);
  assert.equal(parseByteRate("1048576", "--p2p-upload-rate"), 1024 * 1024);
  assert.equal(parseByteRate("10M", "--p2p-upload-rate"), 10 * 1024 * 1024);
  assert.equal(parseByteRate("512k", "--p2p-download-rate"), 512 * 1024);
  assert.equal(parseByteRate("1.5G", "--p2p-download-rate"), 1.5 * 1024 ** 3);
  assert.equal(parseByteRate("64MiB/s", "--p2p-download-rate"), 64 * 1024 * 1024);
  for (const bad of ["", "-1", "ten", "10X", "2T", "1e9"]) {
    assert.throws(() => parseByteRate(bad, "--p2p-upload-rate"), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT") && /--p2p-upload-rate/.test((e as Error).message), bad);
  }
  const root = mkdtempSync(join(tmpdir(), "shoal-daemon-rate-"));
  try {
    for (const [key, flag] of [["p2pUploadBytesPerSec", "--p2p-upload-rate"], ["p2pDownloadBytesPerSec", "--p2p-download-rate"]] as const) {
      await assert.rejects(
        startDaemon({ dataDir: join(root, key), listenAddr: `127.0.0.1:${await freePort()}`, logger: silent, [key]: 1.5 }),
        (e: unknown) => isShoalError(e, "INVALID_ARGUMENT") && (e as Error).message.includes(flag),
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
