// A peer on the node's revocation list is not asked: a PrefetchRunner over real mutual-TLS peers
// (p2p-fixture) whose order names two candidates holding the blob, one of them revoked, fetches
// the whole blob from the other and never calls the revoked one — not even Have. Its job state
// (jobFor) says done with the image's size, every byte from peers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { SeededRandom } from "../../src/base/random.js";
import { createRootCA, signGrant } from "../../src/ca/index.js";
import type { PeerFetcher } from "../../src/agent/p2p/blob-fetch.js";
import { PrefetchRunner, type PrefetchReport } from "../../src/agent/prefetch-runner.js";
import { PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";
import { waitFor } from "../e2e/cluster.js";
import { startPeerNode, type PeerNode } from "./p2p-fixture.js";

const PIECE_SIZE = 64 * 1024;
const ZONE = "a";

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

test("a revoked candidate is never asked; the blob comes whole from the other peer", { timeout: 60_000 }, async (t) => {
  const root = await createRootCA({ clock: systemClock });
  const clusterId = newId();
  const dir = await mkdtemp(join(tmpdir(), "shoal-prefetch-revoked-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logger = pino({ level: "silent" });
  const nodes: PeerNode[] = [];
  for (const name of ["good", "revoked", "fetcher"]) nodes.push(await startPeerNode({ root, clusterId, zone: ZONE, dir: join(dir, name), logger, pieceSize: PIECE_SIZE }));
  t.after(async () => {
    for (const n of nodes) {
      n.client.close();
      n.peer.close();
      await n.server.shutdown(0);
    }
  });
  const [good, revoked, fetcher] = nodes as [PeerNode, PeerNode, PeerNode];

  const blob = Buffer.alloc(5 * PIECE_SIZE + 77);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 29 + (i >> 9)) & 0xff;
  const digest = sha256(blob);
  for (const holder of [good, revoked]) await holder.store.ensure(digest, blob.length, async () => once(blob), "test blob");
  const hashes = Array.from({ length: 6 }, (_, p) => sha256(blob.subarray(p * PIECE_SIZE, (p + 1) * PIECE_SIZE)));

  const asked: string[] = [];
  const recording: PeerFetcher = {
    have: (addr, ...rest) => {
      asked.push(addr);
      return fetcher.client.have(addr, ...rest);
    },
    fetchPiece: (addr, ...rest) => {
      asked.push(addr);
      return fetcher.client.fetchPiece(addr, ...rest);
    },
  };
  const reports: PrefetchReport[] = [];
  const manifest = Buffer.from("{}");
  const runner = new PrefetchRunner({
    sink: fetcher.pieces,
    storeManifest: async (d, bytes) => void (await fetcher.store.ensure(d, bytes.length, async () => once(bytes), "manifest")),
    peer: recording,
    clock: systemClock,
    random: new SeededRandom(3),
    logger,
    report: (e) => reports.push(e),
    isRevoked: (nodeId) => nodeId === revoked.nodeId,
  });
  t.after(() => runner.close());
  const order = PrefetchOrder.fromPartial({
    jobId: "svc.1.abc",
    image: "registry.example/app",
    manifestDigest: sha256(manifest),
    manifest,
    blobs: [{ digest, size: BigInt(blob.length), pieceSize: PIECE_SIZE, pieceHashes: hashes }],
    // The revoked one first: a runner that ignores the list would surely ask it.
    candidates: [revoked, good].map((n) => ({ nodeId: n.nodeId, addr: n.addr })),
    grants: [{ blobDigest: digest, grant: signGrant(root, { jobId: "svc.1.abc", clusterId, zone: ZONE, nodeId: fetcher.nodeId, blobDigest: digest, expiresAtMs: Date.now() + 5 * 60_000 }) }],
  });
  runner.sync(new Map([[order.jobId, order]]));
  await waitFor("the job's end", () => reports.find((r) => r.kind === "done" || r.kind === "failed"), 45_000);

  assert.deepEqual(reports.find((r) => r.kind === "failed"), undefined);
  assert.ok(await fetcher.store.has(digest), "the blob is in the fetcher's content store");
  assert.ok(asked.length > 0 && asked.every((a) => a === good.addr), `only the good peer was asked (asked: ${[...new Set(asked)].join(", ")})`);
  assert.equal(revoked.peer.stats().bytesSent, 0);
  const state = runner.jobFor(order.manifestDigest);
  assert.deepEqual(state, { jobId: order.jobId, manifestDigest: order.manifestDigest, totalBytes: blob.length, heldBytes: blob.length, fromPeers: blob.length, fromRegistry: 0, ended: { kind: "done" } });
});
