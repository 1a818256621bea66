// A seed's upload brings each piece into its zone once ("super-seeding", as the bandwidth
// simulation in cluster-sim does it): once a seed begins sending a piece to one peer it hides the
// piece from the others' Have and answers their FetchPiece for it busy (PEER_OVERLOADED), until
// the hide time passes; the first receiver may ask for it again. A node that seeds no job with the
// blob hides nothing. Real mutual-TLS peers (p2p-fixture).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { hasBit } from "../../src/base/bitfield.js";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createRootCA, signGrant } from "../../src/ca/index.js";
import type { PeerServerOptions } from "../../src/agent/p2p/peer-server.js";
import { seedHideMs } from "../../src/daemon/peer-listener.js";
import { startPeerNode, type PeerNode } from "./p2p-fixture.js";

const PIECE = 1024;

/** A seed (with `server` options) and two peers b and c of zone a, a blob of `blobBytes` held by the seed, and grants. */
async function seedAndPeers(t: TestContext, name: string, pieceSize: number, blobBytes: number, server: Partial<PeerServerOptions>) {
  const root = await createRootCA({ clock: systemClock });
  const clusterId = newId();
  const dir = await mkdtemp(join(tmpdir(), `shoal-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logger = pino({ level: "silent" });
  const nodes: PeerNode[] = [];
  nodes.push(await startPeerNode({ root, clusterId, zone: "a", dir: join(dir, "seed"), logger, pieceSize, server }));
  for (const peer of ["b", "c"]) nodes.push(await startPeerNode({ root, clusterId, zone: "a", dir: join(dir, peer), logger, pieceSize }));
  t.after(async () => {
    for (const n of nodes) {
      n.client.close();
      n.peer.close();
      await n.server.shutdown(0);
    }
  });
  const [seed, b, c] = nodes as [PeerNode, PeerNode, PeerNode];
  const blob = Buffer.alloc(blobBytes, 3);
  const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
  await seed.store.ensure(digest, blob.length, async () => (async function* () { yield blob; })(), "test blob");
  const grant = (n: PeerNode) => signGrant(root, { jobId: "job", clusterId, zone: "a", nodeId: n.nodeId, blobDigest: digest, expiresAtMs: Date.now() + 60_000 });
  return { seed, b, c, digest, grant };
}

test("a seed hides a piece it sent from the other peers until the hide time passes; a non-seed hides nothing", { timeout: 60_000 }, async (t) => {
  let seeding = true;
  let hideMs = 60_000;
  const { seed, b, c, digest, grant } = await seedAndPeers(t, "seed-hide", PIECE, 3 * PIECE, { isSeeding: () => seeding, seedHideMs: () => hideMs });

  assert.equal((await b.client.fetchPiece(seed.addr, digest, 0, grant(b))).length, PIECE, "b gets piece 0 first");
  const cHave = await c.client.have(seed.addr, digest, grant(c));
  assert.ok(!hasBit(cHave.have, 0) && hasBit(cHave.have, 1) && hasBit(cHave.have, 2), "piece 0 is hidden from c, the others are not");
  await assert.rejects(c.client.fetchPiece(seed.addr, digest, 0, grant(c)), (err: unknown) => isShoalError(err, "PEER_OVERLOADED"));
  assert.equal((await b.client.fetchPiece(seed.addr, digest, 0, grant(b))).length, PIECE, "the first receiver may ask again");
  assert.ok(hasBit((await b.client.have(seed.addr, digest, grant(b))).have, 0), "nor is it hidden from b");
  assert.equal((await c.client.fetchPiece(seed.addr, digest, 1, grant(c))).length, PIECE, "c gets another piece");

  // The hide time passes: piece 0 is served to c too.
  hideMs = 1;
  await b.client.fetchPiece(seed.addr, digest, 2, grant(b)); // hidden from c for 1 ms only
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(hasBit((await c.client.have(seed.addr, digest, grant(c))).have, 2));

  // Not seeding the blob: nothing is hidden.
  seeding = false;
  hideMs = 60_000;
  await b.client.fetchPiece(seed.addr, digest, 1, grant(b));
  assert.equal((await c.client.fetchPiece(seed.addr, digest, 1, grant(c))).length, PIECE);
});

test("the hide time is SEED_HIDE_PIECES piece times at the upload limit, and 0 without a limit", () => {
  assert.equal(seedHideMs(4 * 1024 * 1024, 40 * 1024 * 1024), 9000);
  assert.equal(seedHideMs(4 * 1024 * 1024, 0), 0);
});

test("while it hides pieces, a seed sends at most seedMaxStreams pieces at once and answers the next request busy", { timeout: 60_000 }, async (t) => {
  // 2 KiB/s with 1 KiB chunks: a piece of 4 KiB takes about 2 s, so the first stream is still open.
  const { seed, b, c, digest, grant } = await seedAndPeers(t, "seed-streams", 4 * PIECE, 12 * PIECE, { isSeeding: () => true, seedHideMs: () => 60_000, seedMaxStreams: 1, uploadBytesPerSec: 2048, chunkBytes: 1024 });

  const first = b.client.fetchPiece(seed.addr, digest, 0, grant(b));
  await new Promise((r) => setTimeout(r, 300));
  await assert.rejects(c.client.fetchPiece(seed.addr, digest, 1, grant(c)), (err: unknown) => isShoalError(err, "PEER_OVERLOADED"));
  assert.equal((await first).length, 4 * PIECE);
  // The slot is free again, and piece 1 was not left hidden by the refused request.
  assert.equal((await c.client.fetchPiece(seed.addr, digest, 1, grant(c))).length, 4 * PIECE);
});
