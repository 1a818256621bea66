// A peer revoked after this node opened a channel to it is refused from then on: the revocation
// list is checked at the TLS handshake, and the client closes its channels when the list grows, so
// the next call shakes hands again instead of going on over the old connection.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createRootCA, signGrant } from "../../src/ca/index.js";
import { startPeerNode, type PeerNode } from "./p2p-fixture.js";

test("a channel opened before the serving peer was revoked is not used again", { timeout: 60_000 }, async (t) => {
  const root = await createRootCA({ clock: systemClock });
  const clusterId = newId();
  const dir = await mkdtemp(join(tmpdir(), "shoal-peer-client-revoked-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logger = pino({ level: "silent" });
  const nodes: PeerNode[] = [];
  for (const name of ["asker", "server"]) nodes.push(await startPeerNode({ root, clusterId, zone: "a", dir: join(dir, name), logger, pieceSize: 1024 }));
  t.after(async () => {
    for (const n of nodes) {
      n.client.close();
      n.peer.close();
      await n.server.shutdown(0);
    }
  });
  const [asker, server] = nodes as [PeerNode, PeerNode];
  const blob = Buffer.alloc(3000, 7);
  const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
  await server.store.ensure(digest, blob.length, async () => (async function* () { yield blob; })(), "test blob");
  const grant = signGrant(root, { jobId: "job", clusterId, zone: "a", nodeId: asker.nodeId, blobDigest: digest, expiresAtMs: Date.now() + 60_000 });

  const before = await asker.client.have(server.addr, digest, grant);
  assert.equal(before.pieceCount, 3);
  assert.equal(asker.client.stats().channels, 1, "the channel is open");

  // The asker learns that the server's node was removed (its revocation list, as the manager pushes it).
  asker.revocation.revoke({ nodeIds: [server.nodeId] });
  await assert.rejects(asker.client.have(server.addr, digest, grant, { timeoutMs: 10_000 }), (err: unknown) => {
    // The handshake refuses the server's certificate: the call never reaches it.
    assert.ok(isShoalError(err, "UNAVAILABLE") && /has been removed from the cluster/.test(err.message), String(err));
    return true;
  });
  // The server itself still serves others: only the asker's view changed.
  assert.equal((await server.client.have(server.addr, digest, signGrant(root, { jobId: "job", clusterId, zone: "a", nodeId: server.nodeId, blobDigest: digest, expiresAtMs: Date.now() + 60_000 }))).pieceCount, 3);
});
