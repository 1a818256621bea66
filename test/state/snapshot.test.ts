// Snapshots are deterministic (equal state → equal bytes) and restore exactly; garbage is STORE_CORRUPT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { StoreSnapshot } from "../../src/proto/shoal/v1/store.js";
import { ObjectStore } from "../../src/state/index.js";
import { commit, makeCluster, makeNode, makeSecret, makeService, makeTask } from "./fixtures.js";

function populated(): ObjectStore {
  const store = new ObjectStore();
  const cluster = makeCluster();
  const service = makeService("web", { labels: { b: "2", a: "1", "10": "x" }, constraints: ["node.labels.zone==pci"] });
  const secret = makeSecret("tls", Buffer.from("secret-bytes"), "pci");
  commit(store, (tx) => { tx.createCluster(cluster); tx.createSecret(secret); });
  service.spec!.container!.secrets = [{ secretId: secret.id, secretName: "tls", target: "cert.pem" }];
  commit(store, (tx) => {
    tx.createService(service);
    for (let i = 0; i < 20; i++) tx.createTask(makeTask(service.id, { slot: i }));
    tx.createNode(makeNode({}, { zone: "pci", rack: "r1" }));
    tx.putValue("health", Buffer.from("ok"));
  });
  return store;
}

test("snapshot → restore → snapshot is byte-identical, and reads agree", () => {
  const store = populated();
  const bytes = store.snapshot();
  const restored = ObjectStore.restore(bytes);
  assert.deepEqual(restored.snapshot(), bytes);
  assert.equal(restored.lastAppliedIndex, store.lastAppliedIndex);
  assert.deepEqual(restored.listTasks(), store.listTasks());
  assert.deepEqual(restored.findServiceByName("web"), store.findServiceByName("web"));
  assert.deepEqual(restored.getCluster(), store.getCluster());
  assert.deepEqual(restored.getSecretData(store.findSecretByName("tls")!.id), Buffer.from("secret-bytes"));
  // Indexes were rebuilt: filtered reads and uniqueness work after restore.
  const serviceId = store.findServiceByName("web")!.id;
  assert.equal(restored.listTasks({ serviceId }).length, 20);
  assert.throws(() => restored.prepare((tx) => tx.createService(makeService("WEB"))), (e: unknown) => isShoalError(e, "ALREADY_EXISTS"));
});

test("two stores with the same state but different histories give identical snapshot bytes", () => {
  const nodes = Array.from({ length: 30 }, (_, i) => makeNode({}, { z: String(i), a: "first" }));
  const one = new ObjectStore();
  const two = new ObjectStore();
  // Same objects, created in opposite orders and with label maps built in different key orders.
  commit(one, (tx) => { for (const n of nodes) tx.createNode(n); });
  commit(two, (tx) => {
    for (const n of [...nodes].reverse()) tx.createNode({ ...n, spec: { ...n.spec!, labels: { a: "first", z: n.spec!.labels["z"]! } } });
  });
  assert.deepEqual(one.snapshot(), two.snapshot());
});

test("restore of garbage, a wrong format or duplicate IDs is STORE_CORRUPT and leaves the store as it was", () => {
  const store = populated();
  const before = store.snapshot();
  const dup = StoreSnapshot.decode(before);
  dup.nodes.push(dup.nodes[0]!);
  const badId = StoreSnapshot.decode(before);
  badId.tasks[0]!.id = "x";
  const wrongFormat = StoreSnapshot.decode(before);
  wrongFormat.format = 2;
  const cases = [
    Buffer.from("definitely not a snapshot"),
    Buffer.alloc(0), // decodes to format 0
    Buffer.from(before).subarray(0, before.length - 7), // truncated
    StoreSnapshot.encode(dup).finish(),
    StoreSnapshot.encode(badId).finish(),
    StoreSnapshot.encode(wrongFormat).finish(),
  ];
  for (const bytes of cases) {
    assert.throws(() => store.restoreSnapshot(bytes), (e: unknown) => isShoalError(e, "STORE_CORRUPT"));
    assert.throws(() => ObjectStore.restore(bytes), (e: unknown) => isShoalError(e, "STORE_CORRUPT"));
  }
  assert.deepEqual(store.snapshot(), before);
});

test("restore replaces state: objects created after the snapshot are gone, and applies continue from its index", () => {
  const store = populated();
  const snap = store.snapshot();
  const index = store.lastAppliedIndex;
  commit(store, (tx) => tx.putValue("later", Buffer.from("x")));
  store.restoreSnapshot(snap);
  assert.equal(store.getValue("later"), undefined);
  assert.equal(store.lastAppliedIndex, index);
  commit(store, (tx) => tx.putValue("after", Buffer.from("y")));
  assert.equal(store.getValue("after")!.version, BigInt(index + 1));
});
