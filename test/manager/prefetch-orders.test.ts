// What each node of a prefetch job is told: a grant per blob that a peer of its zone accepts for
// that node and blob only; candidates of its own zone only; the registry header for seeds alone;
// nothing for a revoked or down node; a planner mistake that crosses a zone is refused, not sent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { SeededRandom } from "../../src/base/random.js";
import { createRootCA, RootCA, verifyGrant } from "../../src/ca/index.js";
import { buildOrders, grantsDue, DEFAULT_GRANT_TTL_MS } from "../../src/manager/prefetch/orders.js";
import { planPrefetch, type PlanNode } from "../../src/manager/prefetch/plan.js";

const NOW_MS = Date.UTC(2030, 0, 1);
const clusterId = newId();
const blobs = [
  { digest: `sha256:${"a".repeat(64)}`, size: 10n * 1024n * 1024n, pieceSize: 4 * 1024 * 1024, pieceHashes: [] as string[] },
  { digest: `sha256:${"b".repeat(64)}`, size: 1024n, pieceSize: 4 * 1024 * 1024, pieceHashes: [`sha256:${"c".repeat(64)}`] },
];

function node(zone: string, i: number, extra: Partial<PlanNode> = {}): PlanNode {
  return { nodeId: newId(), zone, addr: `127.0.0.1:${7000 + i}`, revoked: false, down: false, excluded: false, load: 0, ...extra };
}

test("orders: grants verify for their node, zone and blob only; candidates stay in the zone; only seeds get the registry header", async () => {
  const root = await createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });
  const workerView = RootCA.fromCertOnly(root.certPem);
  const targets = [...Array.from({ length: 5 }, (_, i) => node("a", i)), ...Array.from({ length: 3 }, (_, i) => node("b", 10 + i))];
  const revoked = node("a", 20, { revoked: true });
  const all = new Map([...targets, revoked].map((n) => [n.nodeId, n]));
  const plan = planPrefetch({ jobId: "job1", targets: [...targets, revoked], random: new SeededRandom(7) });
  const orders = buildOrders({
    jobId: "job1",
    clusterId,
    image: "127.0.0.1:5000/app",
    manifestDigest: `sha256:${"d".repeat(64)}`,
    manifest: Buffer.from("{}"),
    blobs,
    plan,
    nodes: all,
    grantSigner: root,
    nowMs: NOW_MS,
    seedAccess: { authorization: "Bearer scoped-token", caPem: "" },
  });
  assert.equal(orders.length, targets.length, "every eligible target has an order, the revoked node none");
  const byNode = new Map(orders.map((o) => [o.nodeId, o.order]));
  assert.ok(!byNode.has(revoked.nodeId));
  for (const [nodeId, order] of byNode) {
    const me = all.get(nodeId)!;
    for (const c of order.candidates) assert.equal(all.get(c.nodeId)!.zone, me.zone, "a candidate of another zone");
    assert.ok(!order.candidates.some((c) => c.nodeId === revoked.nodeId), "the revoked node is nobody's candidate");
    assert.equal(order.registryAuthorization, order.seed ? "Bearer scoped-token" : "", "only a seed gets the registry header");
    assert.equal(order.grants.length, blobs.length);
    for (const [i, g] of order.grants.entries()) {
      const blob = blobs[i]!;
      const granted = verifyGrant(workerView, g.grant, { clusterId, zone: me.zone, nodeId, blobDigest: blob.digest, nowMs: NOW_MS + 1000 });
      assert.equal(granted.jobId, "job1");
      // Another node, another zone, another blob, or later than its expiry: refused.
      const other = targets.find((t) => t.nodeId !== nodeId)!;
      assert.throws(() => verifyGrant(workerView, g.grant, { clusterId, zone: me.zone, nodeId: other.nodeId, blobDigest: blob.digest, nowMs: NOW_MS }), (e: unknown) => isShoalError(e, "GRANT_WRONG_NODE"));
      assert.throws(() => verifyGrant(workerView, g.grant, { clusterId, zone: me.zone === "a" ? "b" : "a", nodeId, blobDigest: blob.digest, nowMs: NOW_MS }), (e: unknown) => isShoalError(e, "GRANT_WRONG_ZONE"));
      assert.throws(() => verifyGrant(workerView, g.grant, { clusterId, zone: me.zone, nodeId, blobDigest: blobs[1 - i]!.digest, nowMs: NOW_MS }), (e: unknown) => isShoalError(e, "GRANT_WRONG_BLOB"));
      assert.throws(() => verifyGrant(workerView, g.grant, { clusterId, zone: me.zone, nodeId, blobDigest: blob.digest, nowMs: NOW_MS + DEFAULT_GRANT_TTL_MS }), (e: unknown) => isShoalError(e, "GRANT_EXPIRED"));
    }
    if (order.seed) assert.equal(order.originStartPieces.length, blobs.length);
  }
  assert.ok(orders.some((o) => o.order.seed) && orders.some((o) => !o.order.seed));
  assert.equal(new Set(orders.filter((o) => o.order.seed).map((o) => all.get(o.nodeId)!.zone)).size, 2, "each zone has its own seed");
  assert.equal(grantsDue(orders[0]!.order, NOW_MS + 1000), false);
  assert.equal(grantsDue(orders[0]!.order, NOW_MS + DEFAULT_GRANT_TTL_MS / 2 + 1), true);
});

test("orders: a plan that puts a node in another zone's list is refused, not sent; a bad grant lifetime is refused", async () => {
  const root = await createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });
  const a = node("a", 1);
  const b = node("b", 2);
  const nodes = new Map([a, b].map((n) => [n.nodeId, n]));
  const bad = { jobId: "j", zones: ["a", "b"], nodes: [{ nodeId: a.nodeId, zone: "a", role: "peer" as const, candidates: [b.nodeId] }] };
  const input = { jobId: "j", clusterId, image: "r/x", manifestDigest: `sha256:${"e".repeat(64)}`, manifest: Buffer.from("{}"), blobs, plan: bad, nodes, grantSigner: root, nowMs: NOW_MS };
  assert.throws(() => buildOrders(input), (e: unknown) => isShoalError(e, "INTERNAL") && /another zone/.test((e as Error).message));
  assert.throws(() => buildOrders({ ...input, plan: { ...bad, nodes: [] }, grantTtlMs: 60 * 60 * 1000 }), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
});
