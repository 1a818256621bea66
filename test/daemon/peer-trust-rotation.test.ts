// The long-lived P2P side after a root CA rotation (issue 11 follow-up), over real gRPC and mutual
// TLS on 127.0.0.1: a worker's Blobs-only listener (WorkerPeerListener, as the daemon starts it) and
// a peer client, both made while the cluster trusted only the old root, take the new root alone and
// their new certificates under it without a restart; a fetch between them then works with a grant
// signed by the new root, and a node that still holds only an old-root certificate is refused.
// Then the same through the daemon's wiring: in-process daemons (1 manager, 2 workers) rotate to a
// root the test holds the key of, and a worker's listener, started before the rotation, answers a
// peer that uses the other worker's files on disk.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError, ShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, isIssuedBy, parseNodeCertificate, signGrant, splitPemBundle, type RootCA } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { PeerClient } from "../../src/agent/p2p/peer-client.js";
import type { PieceSource } from "../../src/agent/p2p/peer-server.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { currentRoots, WorkerPeerListener } from "../../src/daemon/peer-listener.js";
import { NodeAvailability, NodeRole as ProtoNodeRole } from "../../src/proto/shoal/v1/objects.js";
import { dataDirPaths } from "../../src/storage/paths.js";
import { rootsPeerVerifier } from "../../src/transport/identity.js";
import { RevocationState } from "../../src/transport/revocation.js";
import { freePort, waitFor } from "../e2e/cluster.js";

const PIECE_SIZE = 64 * 1024;
const ZONE = "default";
const logger = pino({ level: "silent" });

interface Identity {
  nodeId: string;
  certPem: string;
  keyPem: string;
}

async function issue(root: RootCA, clusterId: string, nodeId = newId()): Promise<Identity> {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const issued = root.issueNodeCertificate({ csrPem, nodeId, clusterId, role: "swarm-worker", zone: ZONE, clock: systemClock });
  return { nodeId, certPem: issued.certPem, keyPem: (privateKey as KeyObject).export({ type: "pkcs8", format: "pem" }).toString() };
}

function blob(): { digest: string; piece: Buffer; source: PieceSource } {
  const piece = Buffer.alloc(PIECE_SIZE);
  for (let i = 0; i < piece.length; i++) piece[i] = (i * 7 + 3) & 0xff;
  const digest = `sha256:${createHash("sha256").update(piece).digest("hex")}`;
  const source: PieceSource = {
    held: (d) => (d === digest ? { pieceSize: PIECE_SIZE, pieceCount: 1, have: Uint8Array.of(0b1000_0000) } : undefined),
    readPiece: async (d) => {
      if (d !== digest) throw new ShoalError("NOT_FOUND", "not held");
      return Buffer.from(piece);
    },
  };
  return { digest, piece, source };
}

function grantFor(root: RootCA, clusterId: string, nodeId: string, digest: string): Buffer {
  return signGrant(root, { jobId: newId(), clusterId, zone: ZONE, nodeId, blobDigest: digest, expiresAtMs: Date.now() + 5 * 60_000 });
}

test("after a root CA rotation a worker's peer listener and a peer client follow the new root without a restart; an old-root-only node is refused", { timeout: 60_000 }, async (t) => {
  const clusterId = newId();
  const oldRoot = await createRootCA({ clock: systemClock });
  const newRoot = await createRootCA({ clock: systemClock });
  const { digest, piece, source } = blob();

  // The serving worker, as the daemon starts it: its trusted roots are read through a function
  // (the daemon's rootCaPem, replaced when the session brings another bundle).
  let serverTrust = oldRoot.certPem;
  const serverOld = await issue(oldRoot, clusterId);
  const revocation = new RevocationState();
  const listener = await WorkerPeerListener.start({
    clusterId,
    rootCaPem: () => serverTrust,
    certPem: serverOld.certPem,
    source,
    uploadBytesPerSec: 0,
    isSeeding: () => false,
    clock: systemClock,
    logger,
    listenAddr: "127.0.0.1:0",
    identity: serverOld,
    verifier: rootsPeerVerifier({ roots: currentRoots(() => serverTrust), clusterId, clock: systemClock, revocation }),
    revocation,
  });
  t.after(() => listener.close());
  const addr = `127.0.0.1:${listener.port}`;

  // The requesting worker's client, made before the rotation.
  const askerOld = await issue(oldRoot, clusterId);
  const client = new PeerClient({ clusterId, rootCaPem: oldRoot.certPem, identity: askerOld, clock: systemClock });
  t.after(() => client.close());
  const before = await client.fetchPiece(addr, digest, 0, grantFor(oldRoot, clusterId, askerOld.nodeId, digest), { timeoutMs: 20_000 });
  assert.ok(before.equals(piece), "the fetch works before the rotation");

  // The rotation has ended: every node trusts the new root alone and holds a certificate issued by
  // it (no cross-signed intermediate in the chain), and the leader signs grants with the new root.
  const serverNew = await issue(newRoot, clusterId, serverOld.nodeId);
  const askerNew = await issue(newRoot, clusterId, askerOld.nodeId);
  serverTrust = newRoot.certPem;
  listener.updateTrust(newRoot.certPem);
  listener.updateIdentity(serverNew);
  client.updateTrust(newRoot.certPem);
  client.updateIdentity(askerNew.certPem, askerNew.keyPem);

  const after = await client.fetchPiece(addr, digest, 0, grantFor(newRoot, clusterId, askerNew.nodeId, digest), { timeoutMs: 20_000 });
  assert.ok(after.equals(piece), "the fetch works after the rotation, on new channels under the new root");
  const have = await client.have(addr, digest, grantFor(newRoot, clusterId, askerNew.nodeId, digest), { timeoutMs: 20_000 });
  assert.equal(have.pieceCount, 1);

  // A node that never renewed: its certificate chains only to the old root. Its client trusts both
  // roots, so what refuses it is the serving peer, not its own check of the server.
  const stale = await issue(oldRoot, clusterId);
  const staleClient = new PeerClient({ clusterId, rootCaPem: oldRoot.certPem + newRoot.certPem, identity: stale, clock: systemClock });
  t.after(() => staleClient.close());
  await assert.rejects(staleClient.fetchPiece(addr, digest, 0, grantFor(newRoot, clusterId, stale.nodeId, digest), { timeoutMs: 20_000 }), (err: unknown) => {
    assert.ok(isShoalError(err), String(err));
    assert.notEqual(err.code, "TIMEOUT", err.message);
    assert.equal(err.code, "UNAUTHENTICATED", err.message);
    return true;
  });
  // A grant the old root signed is not the cluster's any more either.
  await assert.rejects(client.fetchPiece(addr, digest, 0, grantFor(oldRoot, clusterId, askerNew.nodeId, digest), { timeoutMs: 20_000 }), (err: unknown) => {
    assert.ok(isShoalError(err), String(err));
    assert.equal(err.code, "GRANT_INVALID", err.message);
    return true;
  });
});

interface Started {
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
  dir: string;
}

async function startNode(t: TestContext, root: string, name: string): Promise<Started> {
  const dir = join(root, name);
  const addr = `127.0.0.1:${await freePort()}`;
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger, raftTiming: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 }, heartbeatPeriodMs: 300 });
  const client = new DaemonClient(daemon.socketPath);
  t.after(async () => {
    client.close();
    await daemon.stop();
  });
  return { daemon, client, addr, dir };
}

/** `shoal ca --rotate --ca-cert --ca-key` with `root`, until the leader reports it over. */
async function rotateTo(m: Started, root: RootCA): Promise<void> {
  await m.client.rotateRootCa({ caCertPem: Buffer.from(root.certPem), caKeyPem: Buffer.from(root.keyPem!) });
  await waitFor(
    "the rotation to the test's root to end",
    async () => {
      const view = await m.client.getRootCa();
      return (view.rotation === undefined && view.root?.fingerprint === root.fingerprint) || undefined;
    },
    60_000,
  );
}

/** The node's files once it trusts `root` alone and holds a certificate it issued. */
async function filesUnder(node: Started, root: RootCA): Promise<{ rootCaPem: string; certPem: string; keyPem: string }> {
  const paths = dataDirPaths(node.dir);
  return waitFor(
    `${node.dir} to trust the new root alone`,
    () => {
      const rootCaPem = readFileSync(paths.rootCaFile, "utf8");
      const certPem = readFileSync(paths.nodeCertFile, "utf8");
      const roots = splitPemBundle(rootCaPem);
      if (roots.length !== 1 || roots[0]!.trim() !== root.certPem.trim() || !isIssuedBy(certPem, root)) return undefined;
      return { rootCaPem, certPem, keyPem: readFileSync(paths.nodeKeyFile, "utf8") };
    },
    60_000,
  );
}

test("daemons: a worker's peer listener started before a root CA rotation takes grants of the new root after it and refuses an old-root-only node", { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-peer-trust-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const rootA = await createRootCA({ clock: systemClock });
  const rootB = await createRootCA({ clock: systemClock });
  const m = await startNode(t, dir, "m1");
  const init = await m.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  // First to a root the test holds, so that it can make a certificate "left behind" under it.
  await rotateTo(m, rootA);
  const token = (await m.client.getJoinToken({ role: ProtoNodeRole.NODE_ROLE_WORKER, rotate: false, expiresInSeconds: 0n })).token;
  const [w1, w2] = [await startNode(t, dir, "w1"), await startNode(t, dir, "w2")];
  for (const w of [w1, w2]) await w.client.join({ token, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  await waitFor("w1's peer listener", () => w1.daemon.workerPeerPort, 30_000);
  await waitFor("3 ready nodes", async () => ((await m.client.listNodes()).filter((n) => n.status?.state === 2).length === 3 ? true : undefined), 30_000);

  await rotateTo(m, rootB);
  await filesUnder(w1, rootB);
  const asker = await filesUnder(w2, rootB);
  const askerId = parseNodeCertificate(asker.certPem).nodeId;
  const clusterId = init.clusterId || parseNodeCertificate(asker.certPem).clusterId;
  const digest = `sha256:${"ab".repeat(32)}`;
  const grant = (root: RootCA, nodeId: string) => signGrant(root, { jobId: newId(), clusterId, zone: ZONE, nodeId, blobDigest: digest, expiresAtMs: Date.now() + 5 * 60_000 });

  // w2's identity and trust as on its disk: the grant and the certificate pass, and w1 answers
  // that it holds no such blob (the check after the grant's).
  const client = new PeerClient({ clusterId, rootCaPem: asker.rootCaPem, identity: asker, clock: systemClock });
  t.after(() => client.close());
  await assert.rejects(client.have(w1.addr, digest, grant(rootB, askerId), { timeoutMs: 20_000 }), (err: unknown) => {
    assert.ok(isShoalError(err), String(err));
    assert.equal(err.code, "NOT_FOUND", err.message);
    return true;
  });
  // A node whose certificate chains only to the root the cluster left is refused.
  const stale = await issue(rootA, clusterId);
  const staleClient = new PeerClient({ clusterId, rootCaPem: rootA.certPem + rootB.certPem, identity: stale, clock: systemClock });
  t.after(() => staleClient.close());
  await assert.rejects(staleClient.have(w1.addr, digest, grant(rootB, stale.nodeId), { timeoutMs: 20_000 }), (err: unknown) => {
    assert.ok(isShoalError(err), String(err));
    assert.equal(err.code, "UNAUTHENTICATED", err.message);
    return true;
  });
});
