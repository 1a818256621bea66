// The long-lived P2P side after a root CA rotation (issue 11 follow-up), over real gRPC and mutual
// TLS on 127.0.0.1: a worker's Blobs-only listener (WorkerPeerListener, as the daemon starts it) and
// a peer client, both made while the cluster trusted only the old root, take the new root alone and
// their new certificates under it without a restart; a fetch between them then works with a grant
// signed by the new root, and a node that still holds only an old-root certificate is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, type KeyObject } from "node:crypto";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError, ShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, signGrant, type RootCA } from "../../src/ca/index.js";
import { PeerClient } from "../../src/agent/p2p/peer-client.js";
import type { PieceSource } from "../../src/agent/p2p/peer-server.js";
import { currentRoots, WorkerPeerListener } from "../../src/daemon/peer-listener.js";
import { rootsPeerVerifier } from "../../src/transport/identity.js";
import { RevocationState } from "../../src/transport/revocation.js";

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
