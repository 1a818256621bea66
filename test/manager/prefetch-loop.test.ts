// The prefetch leader loop against the real orchestrator and scheduler on an in-memory store: a
// zone-a service's image is planned for the zone-a nodes its tasks are assigned to and no other;
// the manifest is read once; seeds alone get the registry header; the seeds' piece hashes reach
// the other nodes; a peer reported for a bad piece, a removed node and a down node are planned
// out; grants are renewed; the job is withdrawn when its tasks start, with its figures.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createRootCA, RootCA, verifyGrant } from "../../src/ca/index.js";
import type { PrefetchImageSource } from "../../src/manager/prefetch/image-source.js";
import { PrefetchJobViews } from "../../src/manager/prefetch/job-views.js";
import { PrefetchOrderBoard } from "../../src/manager/prefetch/order-board.js";
import { DEFAULT_GRANT_TTL_MS } from "../../src/manager/prefetch/orders.js";
import { DOWN_GRACE_MS, prefetchLoop, RESOLVE_RETRY_MS } from "../../src/manager/prefetch/prefetch-loop.js";
import { PrefetchOutcome, ReportPrefetchRequest } from "../../src/proto/shoal/v1/dispatcher.js";
import { NodeState, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { DIGEST_A, Harness, idOf, makeNode } from "./leader-loop-harness.js";

const PIECE = 1024 * 1024;
const CONFIG = { digest: `sha256:${"c".repeat(64)}`, size: 700 };
const LAYER = { digest: `sha256:${"1".repeat(64)}`, size: 3 * PIECE + 5 };
const IMAGE = "127.0.0.1:5000/app:1";

class FakeImages implements PrefetchImageSource {
  manifestReads = 0;
  accessReads = 0;
  fail: ShoalError | undefined;
  async image(image: string, digest: string) {
    this.manifestReads++;
    if (this.fail !== undefined) throw this.fail;
    assert.equal(image, IMAGE);
    assert.equal(digest, DIGEST_A);
    return { manifest: Buffer.from('{"schemaVersion":2}'), blobs: [CONFIG, LAYER] };
  }
  async seedAccess() {
    this.accessReads++;
    return { authorization: `Bearer seed-token-${this.accessReads}` };
  }
}

async function setup(options: { fail?: ShoalError } = {}) {
  const images = new FakeImages();
  images.fail = options.fail;
  const board = new PrefetchOrderBoard();
  const views = new PrefetchJobViews();
  const clusterId = newId();
  const probe = new Harness();
  const root = await createRootCA({ clock: probe.clock });
  probe.stop();
  const h = new Harness([prefetchLoop({ images, board, views, clusterId, grantSigner: () => root, pieceSize: PIECE, publishIntervalMs: 200 })]);
  h.clock.advanceTo(probe.clock.nowMs());
  const zoneA = ["a1", "a2", "a3", "a4"];
  const zoneB = ["b1", "b2"];
  await h.addNodes(
    ...zoneA.map((n, i) => {
      const node = makeNode(n, { zone: "a" });
      node.status!.addr = `127.0.0.1:${7100 + i}`;
      return node;
    }),
    ...zoneB.map((n, i) => {
      const node = makeNode(n, { zone: "b" });
      node.status!.addr = `127.0.0.1:${7200 + i}`;
      return node;
    }),
  );
  await h.start();
  return { h, images, board, views, clusterId, root, zoneA: zoneA.map(idOf), zoneB: zoneB.map(idOf) };
}

function jobIdOf(board: PrefetchOrderBoard): string {
  const jobs = board.jobs();
  assert.equal(jobs.length, 1, `one job, got ${JSON.stringify(jobs)}`);
  return jobs[0]!;
}

test("a zone-a service: orders for its zone-a targets only, one seed with the header, grants for each node and blob, hashes published", async () => {
  const { h, images, board, views, clusterId, root, zoneA, zoneB } = await setup();
  const changed: string[] = [];
  board.onChange((ids) => changed.push(...ids));
  await h.createService({ name: "app", replicas: 4, zone: "a", container: { image: IMAGE } as never });
  const jobId = jobIdOf(board);
  assert.equal(images.manifestReads, 1);

  const entries = zoneA.map((id) => board.entry(id, jobId));
  assert.ok(entries.every((e) => e !== undefined), "every zone-a target has an order");
  for (const id of zoneB) assert.equal(board.ordersFor(id).length, 0, "no zone-b node has an order");
  assert.ok(!changed.some((id) => zoneB.includes(id)), "no zone-b node was even touched");
  const seeds = entries.filter((e) => e!.order.seed);
  assert.equal(seeds.length, 1, "one seed in a zone of 4");
  assert.equal(seeds[0]!.order.registryAuthorization, "Bearer seed-token-1");
  for (const e of entries) {
    assert.equal(e!.zone, "a");
    assert.deepEqual(e!.order.blobs.map((b) => b.digest), [CONFIG.digest, LAYER.digest]);
    assert.deepEqual(e!.order.blobs.map((b) => b.pieceHashes.length), [1, 4]);
    if (!e!.order.seed) {
      assert.equal(e!.order.registryAuthorization, "", "a peer never gets the registry header");
      assert.ok(e!.order.candidates.length > 0);
      for (const c of e!.order.candidates) assert.ok(zoneA.includes(c.nodeId) && c.nodeId !== e!.nodeId, "candidates of its own zone");
    }
    const verifier = RootCA.fromCertOnly(root.certPem);
    for (const g of e!.order.grants) {
      const grant = verifyGrant(verifier, g.grant, { clusterId, zone: "a", nodeId: e!.nodeId, blobDigest: g.blobDigest, nowMs: h.clock.nowMs() });
      assert.equal(grant.jobId, jobId);
    }
  }
  const view = views.list().find((v) => v.jobId === jobId)!;
  assert.equal(view.state, "running");
  assert.equal(Number(view.sizeBytes), CONFIG.size + LAYER.size);
  assert.deepEqual(view.nodes.map((n) => n.nodeId).sort(), [...zoneA].sort());
  assert.ok(!JSON.stringify(view, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)).includes("seed-token"), "the view carries no registry header");

  // The seed reports its piece hashes: after the publish interval every node's order has them.
  const seed = seeds[0]!;
  const hashes = [0, 1, 2, 3].map((i) => ({ blobDigest: LAYER.digest, index: i, hash: `sha256:${String(i).repeat(64)}` }));
  board.report({ nodeId: seed.nodeId, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, pieceHashes: hashes.slice(0, 2) }) });
  board.report({ nodeId: seed.nodeId, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, pieceHashes: hashes.slice(2) }) });
  await h.advance(250);
  for (const id of zoneA) assert.deepEqual(board.entry(id, jobId)!.order.blobs[1]!.pieceHashes, hashes.map((x) => x.hash), `node ${id} has every hash`);
  assert.equal(images.manifestReads, 1, "the manifest is read once per job");
  h.stop();
});

test("a bad peer is excluded, a removed node and a down node are planned out, grants are renewed, and the job ends when its tasks start", async () => {
  const { h, images, board, views, zoneA } = await setup();
  await h.createService({ name: "app", replicas: 4, zone: "a", container: { image: IMAGE } as never });
  const jobId = jobIdOf(board);
  const peers = zoneA.filter((id) => !board.entry(id, jobId)!.order.seed);
  const [reporter, rest] = [peers[0]!, peers.slice(1)];
  const bad = board.entry(reporter, jobId)!.order.candidates[0]!.nodeId;

  board.report({ nodeId: reporter, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, badPeers: [{ blobDigest: LAYER.digest, nodeId: bad, piece: 1, reason: "PIECE_CORRUPT" }] }) });
  await h.settle();
  assert.equal(board.entry(bad, jobId), undefined, "the bad peer's order is withdrawn");
  for (const id of zoneA) for (const c of board.entry(id, jobId)?.order.candidates ?? []) assert.notEqual(c.nodeId, bad, `${id} no longer lists the bad peer`);
  assert.equal(views.list()[0]!.nodes.find((n) => n.nodeId === bad)!.state, "excluded");

  // A node goes down: no order while it is down, one again when it is back.
  const downNode = zoneA.find((id) => id !== bad && id !== reporter && board.entry(id, jobId) !== undefined)!;
  await h.write((tx) => {
    const n = tx.getNode(downNode)!;
    n.status!.state = NodeState.NODE_STATE_DOWN;
    tx.updateNode(n);
  });
  assert.ok(board.entry(downNode, jobId) !== undefined, "a node just marked down keeps its order (it may only have missed heartbeats)");
  await h.advance(DOWN_GRACE_MS + 1000);
  assert.equal(board.entry(downNode, jobId), undefined, "down for the grace period: planned out");
  for (const id of zoneA) for (const c of board.entry(id, jobId)?.order.candidates ?? []) assert.notEqual(c.nodeId, downNode, `${id} no longer lists the down node`);
  await h.write((tx) => {
    const n = tx.getNode(downNode)!;
    n.status!.state = NodeState.NODE_STATE_READY;
    tx.updateNode(n);
  });
  assert.ok(board.entry(downNode, jobId) !== undefined, "back up: its order again");

  // A removed (revoked) node: out of the plan and of every candidate list.
  const removed = rest.find((id) => id !== bad && id !== downNode) ?? downNode;
  await h.write((tx) => tx.removeNode(removed)); // what node rm does to the node object (it also revokes)
  assert.equal(board.entry(removed, jobId), undefined);
  for (const id of zoneA) for (const c of board.entry(id, jobId)?.order.candidates ?? []) assert.notEqual(c.nodeId, removed);

  // Grants: renewed before half their lifetime is left, with a fresh seed header.
  const seedId = zoneA.find((id) => board.entry(id, jobId)?.order.seed === true)!;
  const before = board.entry(seedId, jobId)!.order.grantsExpireAt!.getTime();
  // The loop looks at the grants every few seconds (RESOLVE_RETRY_MS at most).
  await h.advance(DEFAULT_GRANT_TTL_MS / 2 + RESOLVE_RETRY_MS + 1000);
  const renewed = board.entry(seedId, jobId)!.order;
  assert.ok(renewed.grantsExpireAt!.getTime() > before, "grants renewed");
  assert.ok(renewed.grantsExpireAt!.getTime() - h.clock.nowMs() > DEFAULT_GRANT_TTL_MS / 2);
  assert.notEqual(renewed.registryAuthorization, "Bearer seed-token-1", "the seed header is asked for again at renewal");

  // Every remaining node reports done; then the tasks start and the job is withdrawn.
  for (const id of zoneA) {
    if (id === bad || id === removed) continue;
    board.report({ nodeId: id, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, outcome: PrefetchOutcome.PREFETCH_OUTCOME_DONE, bytesFromRegistry: id === seedId ? BigInt(CONFIG.size + LAYER.size) : 0n, bytesFromPeers: id === seedId ? 0n : BigInt(CONFIG.size + LAYER.size) }) });
  }
  await h.settle();
  assert.equal(views.list()[0]!.state, "done");
  await h.agentsRun();
  assert.deepEqual(board.jobs(), [], "withdrawn once no task waits");
  const ended = views.list()[0]!;
  assert.ok(ended.endedAt !== undefined);
  assert.equal(images.manifestReads, 1);
  assert.ok(h.tasks().some((t) => t.status!.state === TaskState.TASK_STATE_RUNNING));
  h.stop();
});

test("a manifest the registry refuses: the view says why, and the read is tried again later", async () => {
  const { h, images, board, views } = await setup({ fail: new ShoalError("UNAUTHENTICATED", "registry 127.0.0.1:5000 refused the login") });
  await h.createService({ name: "app", replicas: 2, zone: "a", container: { image: IMAGE } as never });
  assert.deepEqual(board.jobs(), []);
  assert.equal(images.manifestReads, 1);
  const view = views.list()[0]!;
  assert.equal(view.state, "resolving");
  assert.match(view.message, /^UNAUTHENTICATED: /);
  images.fail = undefined;
  await h.advance(RESOLVE_RETRY_MS + 1000);
  assert.equal(images.manifestReads, 2);
  assert.equal(board.jobs().length, 1, "planned once the manifest came");
  assert.equal(views.list()[0]!.message, "");
  h.stop();
});

test("a target relabelled into another zone leaves the job: its order is withdrawn and no order of the job appears in its new zone", async () => {
  const { h, board, zoneA } = await setup();
  await h.createService({ name: "app", replicas: 4, zone: "a", container: { image: IMAGE } as never });
  const jobId = jobIdOf(board);
  const moved = zoneA.find((id) => board.entry(id, jobId)?.order.seed === true)!;
  await h.write((tx) => {
    const n = tx.getNode(moved)!;
    n.spec!.labels = { zone: "b" };
    tx.updateNode(n);
  });
  assert.equal(board.entry(moved, jobId), undefined, "the relabelled node has no order of the zone-a job");
  const entries = zoneA.flatMap((id) => board.entry(id, jobId) ?? []);
  assert.ok(entries.length >= 2);
  for (const e of entries) {
    assert.equal(e.zone, "a");
    for (const c of e.order.candidates) assert.notEqual(c.nodeId, moved);
  }
  assert.equal(entries.filter((e) => e.order.seed).length, 1, "zone a got a new seed");
  h.stop();
});

test("a blob that fails its digest: the hash sources (or the failing seed) are excluded, the hashes dropped, and the job runs again with new seeds, at most MAX_PREFETCH_ATTEMPTS times", async () => {
  const { h, board, zoneA } = await setup();
  await h.createService({ name: "app", replicas: 4, zone: "a", container: { image: IMAGE } as never });
  const jobId = jobIdOf(board);
  const seedOf = () => zoneA.find((id) => board.entry(id, jobId)?.order.seed === true);
  const firstSeed = seedOf()!;
  const hashes = [0, 1, 2, 3].map((i) => ({ blobDigest: LAYER.digest, index: i, hash: `sha256:${String(i).repeat(64)}` }));
  board.report({ nodeId: firstSeed, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, pieceHashes: hashes }) });
  await h.advance(250);
  const peer = zoneA.find((id) => id !== firstSeed)!;
  assert.equal(board.entry(peer, jobId)!.order.blobs[1]!.pieceHashes[0], hashes[0]!.hash);

  // A peer's blob fails its digest: the seed whose hashes it used is excluded.
  board.report({ nodeId: peer, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, outcome: PrefetchOutcome.PREFETCH_OUTCOME_FAILED, failureCode: "DIGEST_MISMATCH", failureMessage: "blob does not match" }) });
  await h.advance(250);
  assert.equal(board.entry(firstSeed, jobId), undefined, "the seed that published the hashes is out");
  const secondSeed = seedOf()!;
  assert.ok(secondSeed !== undefined && secondSeed !== firstSeed, "a new seed");
  for (const id of zoneA.filter((x) => x !== firstSeed)) {
    const order = board.entry(id, jobId)!.order;
    assert.equal(order.attempt, 1, `${id} runs the job again`);
    assert.ok(order.blobs.every((b) => b.pieceHashes.every((x) => x === "")), "the wrong hashes are gone");
  }

  // The new seed itself fails its digest (the registry's bytes): it is excluded; attempt 2.
  board.report({ nodeId: secondSeed, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, outcome: PrefetchOutcome.PREFETCH_OUTCOME_FAILED, failureCode: "DIGEST_MISMATCH", failureMessage: "blob does not match" }) });
  await h.advance(250);
  assert.equal(board.entry(secondSeed, jobId), undefined);
  const third = seedOf()!;
  assert.equal(board.entry(third, jobId)!.order.attempt, 2);

  // Once more: the job is not run again (3 attempts in all); the orders stay at attempt 2.
  board.report({ nodeId: third, zone: "a", report: ReportPrefetchRequest.fromPartial({ jobId, outcome: PrefetchOutcome.PREFETCH_OUTCOME_FAILED, failureCode: "DIGEST_MISMATCH", failureMessage: "blob does not match" }) });
  await h.advance(250);
  assert.equal(board.entry(third, jobId)?.order.attempt, 2);
  h.stop();
});
