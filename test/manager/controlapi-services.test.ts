// The control API's service writes over their narrow context (a store and a propose that applies at
// once, a manual clock): paths the real API cannot reach from outside, such as a spec sent back with
// the digest the managers stored, and the retried pending-delete mark.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { ManualClock } from "../../src/base/clock.js";
import { createService, removeService, updateService, type ServiceWriteContext } from "../../src/manager/controlapi/services.js";
import { ServiceSpec, UpdateState, type Service } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, type StoreTransaction } from "../../src/state/index.js";

const DIGEST = `sha256:${"a".repeat(64)}`;

function context(beforeEachPropose?: (store: ObjectStore) => void): ServiceWriteContext & { store: ObjectStore; clock: ManualClock; proposals: number } {
  const store = new ObjectStore();
  const clock = new ManualClock(Date.parse("2026-12-01T00:00:00Z"));
  const ctx = {
    store,
    clock,
    proposals: 0,
    async propose(build: (tx: StoreTransaction) => void) {
      beforeEachPropose?.(store);
      ctx.proposals++;
      const result = store.apply(store.prepare(build, { now: new Date(clock.nowMs()) }), { index: store.lastAppliedIndex + 1 });
      if (!result.ok) throw result.error;
      return result;
    },
  };
  return ctx;
}

/** What the orchestrator might store: the resolved digest on the service's own spec. */
function storeDigest(ctx: ReturnType<typeof context>, service: Service): Service {
  const next = structuredClone(service);
  next.spec!.container!.imageDigest = DIGEST;
  const result = ctx.store.apply(ctx.store.prepare((tx) => tx.updateService(next)), { index: ctx.store.lastAppliedIndex + 1 });
  assert.ok(result.ok);
  return ctx.store.getService(service.id)!;
}

test("a spec sent back with the stored digest is accepted; a new image drops it; any other digest is refused", async () => {
  const ctx = context();
  const created = (await createService(ctx, { spec: ServiceSpec.fromPartial({ name: "web", replicas: 1, container: { image: "127.0.0.1:5000/web:1" } }) }))!;
  const withDigest = storeDigest(ctx, created);
  const sentBack = ServiceSpec.fromPartial(withDigest.spec!);
  sentBack.replicas = 3;
  const scaled = (await updateService(ctx, { serviceId: created.id, serviceVersion: withDigest.meta!.version, spec: sentBack, rollback: false }))!;
  assert.equal(scaled.spec!.container!.imageDigest, DIGEST, "a read-modify-write keeps what the managers stored");
  const newImage = ServiceSpec.fromPartial(scaled.spec!);
  newImage.container!.image = "127.0.0.1:5000/web:2";
  const moved = (await updateService(ctx, { serviceId: created.id, serviceVersion: scaled.meta!.version, spec: newImage, rollback: false }))!;
  assert.equal(moved.spec!.container!.imageDigest, "", "the old image's digest does not follow a new image");
  const forged = ServiceSpec.fromPartial(moved.spec!);
  forged.container!.imageDigest = `sha256:${"b".repeat(64)}`;
  await assert.rejects(updateService(ctx, { serviceId: created.id, serviceVersion: moved.meta!.version, spec: forged, rollback: false }), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT"));
});

test("an unchanged spec keeps previous_spec; a rollback is stamped with the injected clock", async () => {
  const ctx = context();
  const created = (await createService(ctx, { spec: ServiceSpec.fromPartial({ name: "web", replicas: 1, container: { command: ["a"] } }) }))!;
  const v2 = ServiceSpec.fromPartial(created.spec!);
  v2.replicas = 2;
  const updated = (await updateService(ctx, { serviceId: created.id, serviceVersion: created.meta!.version, spec: v2, rollback: false }))!;
  const same = (await updateService(ctx, { serviceId: created.id, serviceVersion: updated.meta!.version, spec: v2, rollback: false }))!;
  assert.equal(same.previousSpec!.replicas, 1, "sending the same spec again does not lose the rollback target");
  ctx.clock.advance(5000);
  const rolled = (await updateService(ctx, { serviceId: created.id, serviceVersion: same.meta!.version, spec: undefined, rollback: true }))!;
  assert.equal(rolled.spec!.replicas, 1);
  assert.equal(rolled.updateStatus!.state, UpdateState.UPDATE_STATE_ROLLBACK_STARTED);
  assert.equal(rolled.updateStatus!.startedAt!.toISOString(), "2026-12-01T00:00:05.000Z");
});

test("the pending-delete mark is retried when another writer changed the service in between", async () => {
  let interfere = 2;
  const ctx = context((store) => {
    // The orchestrator writes the service (an update status, say) just before each of our proposals.
    if (interfere-- <= 0) return;
    const service = store.listServices()[0]!;
    const result = store.apply(store.prepare((tx) => tx.updateService({ ...service, updateStatus: { state: UpdateState.UPDATE_STATE_UPDATING, message: "", startedAt: undefined, completedAt: undefined, specVersion: service.specVersion } })), { index: store.lastAppliedIndex + 1 });
    assert.ok(result.ok);
  });
  interfere = 0;
  const created = (await createService(ctx, { spec: ServiceSpec.fromPartial({ name: "web", replicas: 1, container: { command: ["a"] } }) }))!;
  interfere = 2;
  const before = ctx.proposals;
  await removeService(ctx, created.id);
  const after = ctx.store.getService(created.id)!;
  assert.equal(after.pendingDelete, true);
  assert.equal(after.updateStatus!.state, UpdateState.UPDATE_STATE_UPDATING, "the other writer's change is kept");
  assert.equal(ctx.proposals - before, 3, "two conflicts, then the mark");
});
