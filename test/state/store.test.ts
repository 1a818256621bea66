// Transactions: prepare checks, apply re-checks, all-or-nothing, versions = raft index, CAS, reads are copies.
import { ManualClock } from "../../src/base/clock.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { newId } from "../../src/base/ids.js";
import { isShoalError } from "../../src/base/errors.js";
import { ContainerSpec, Secret } from "../../src/proto/shoal/v1/objects.js";
import { StoreAction, StoreActionKind, StoreProposal } from "../../src/proto/shoal/v1/store.js";
import { ObjectStore } from "../../src/state/index.js";
import { commit, makeCluster, makeNode, makeSecret, makeService, makeTask, T0, thrownCode } from "./fixtures.js";

test("an applied create gets version = raft index and the proposal's timestamps", () => {
  const store = new ObjectStore();
  const service = makeService("web");
  const bytes = store.prepare((tx) => tx.createService(service), { now: T0 });
  const result = store.apply(bytes, { index: 7 });
  assert.equal(result.ok, true);
  const stored = store.getService(service.id)!;
  assert.equal(stored.meta!.version, 7n);
  assert.deepEqual(stored.meta!.createdAt, T0);
  assert.deepEqual(stored.meta!.updatedAt, T0);
  assert.equal(store.lastAppliedIndex, 7);
  assert.equal(store.findServiceByName("WEB")!.id, service.id, "names are found regardless of case");
});

test("prepare does not change the store; only apply does", () => {
  const store = new ObjectStore();
  const service = makeService("web");
  store.prepare((tx) => tx.createService(service), { now: T0 });
  assert.equal(store.getService(service.id), undefined);
  assert.equal(store.lastAppliedIndex, 0);
});

test("an update keeps createdAt, sets updatedAt and bumps the version to the new index", () => {
  const store = new ObjectStore();
  const service = makeService("web");
  commit(store, (tx) => tx.createService(service));
  const later = new Date(T0.getTime() + 60_000);
  const read = store.getService(service.id)!;
  read.spec!.replicas = 5;
  const bytes = store.prepare((tx) => tx.updateService(read), { now: later });
  const result = store.apply(bytes, { index: 10 });
  assert.equal(result.ok, true);
  assert.equal(result.ok && result.changes[0]!.kind, "update");
  const stored = store.getService(service.id)!;
  assert.equal(stored.spec!.replicas, 5);
  assert.equal(stored.meta!.version, 10n);
  assert.deepEqual(stored.meta!.createdAt, T0);
  assert.deepEqual(stored.meta!.updatedAt, later);
});

test("a stale version is refused at prepare and, if it raced, at apply, with VERSION_CONFLICT", () => {
  const store = new ObjectStore();
  const service = makeService("web");
  commit(store, (tx) => tx.createService(service));
  const readA = store.getService(service.id)!;
  const readB = store.getService(service.id)!;
  readA.spec!.replicas = 2;
  readB.spec!.replicas = 3;
  // Both prepared against the same state; the first to commit wins.
  const first = store.prepare((tx) => tx.updateService(readA));
  const second = store.prepare((tx) => tx.updateService(readB));
  assert.equal(store.apply(first, { index: 2 }).ok, true);
  const lost = store.apply(second, { index: 3 });
  assert.equal(lost.ok, false);
  assert.ok(!lost.ok && lost.error.code === "VERSION_CONFLICT");
  assert.match(!lost.ok ? lost.error.message : "", /changed by someone else; read it again and retry|changed by someone else .*retry/);
  assert.equal(store.getService(service.id)!.spec!.replicas, 2);
  assert.equal(store.lastAppliedIndex, 3, "a refused proposal still consumes its index");
  // Preparing with the stale copy now fails up front.
  assert.equal(thrownCode(() => store.prepare((tx) => tx.updateService(readB))), "VERSION_CONFLICT");
});

test("apply is all-or-nothing: a failing last action leaves no trace of the earlier ones", () => {
  const store = new ObjectStore();
  const existing = makeService("taken");
  commit(store, (tx) => tx.createService(existing));
  const before = store.listServices();
  const a = makeService("a");
  const b = makeService("b");
  // Prepare each part alone (each is valid then), then splice them into one proposal that
  // conflicts at apply time.
  const okPart = StoreProposal.decode(store.prepare((tx) => { tx.createService(a); tx.createService(b); tx.putValue("k", Buffer.from("v")); }));
  const dup = StoreProposal.decode(store.prepare((tx) => tx.createService(makeService("c"))));
  dup.actions[0]!.service!.spec!.name = "TAKEN";
  const spliced = StoreProposal.encode({ ...okPart, actions: [...okPart.actions, ...dup.actions] }).finish();
  const result = store.apply(spliced, { index: 5 });
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.error.code, "ALREADY_EXISTS");
  assert.deepEqual(store.listServices(), before);
  assert.equal(store.getValue("k"), undefined);
});

test("a transaction sees its own writes; several writes to one object coalesce into one change", () => {
  const store = new ObjectStore();
  const service = makeService("web");
  const task = makeTask(service.id);
  const result = commit(store, (tx) => {
    tx.createService(service);
    tx.createTask(task);
    const t = tx.getTask(task.id)!;
    assert.equal(t.meta!.version, 0n, "objects created in this transaction read as version 0");
    t.nodeId = newId();
    tx.updateTask(t);
  });
  assert.deepEqual(result.changes.map((c) => `${c.table}:${c.kind}`), ["services:create", "tasks:create"]);
  assert.notEqual(store.getTask(task.id)!.nodeId, "");
});

test("name uniqueness: services and secrets, case-insensitive, and within one transaction", () => {
  const store = new ObjectStore();
  commit(store, (tx) => tx.createService(makeService("web")));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("Web")))), "ALREADY_EXISTS");
  assert.equal(thrownCode(() => store.prepare((tx) => { tx.createService(makeService("x")); tx.createService(makeService("x")); })), "ALREADY_EXISTS");
  commit(store, (tx) => tx.createSecret(makeSecret("db-pass", Buffer.from("pw"))));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createSecret(makeSecret("DB-PASS", Buffer.from("x"))))), "ALREADY_EXISTS");
  // Removing and re-creating a name in one transaction is fine.
  const web = store.findServiceByName("web")!;
  commit(store, (tx) => { tx.removeService(web.id); tx.createService(makeService("web")); });
  assert.notEqual(store.findServiceByName("web")!.id, web.id);
});

test("IDs are validated; existence is required for update and remove; create refuses duplicates", () => {
  const store = new ObjectStore();
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("web", {}, "NOT-AN-ID")))), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createNode(makeNode({ id: "a".repeat(24) })))), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createNode(makeNode({ id: "a".repeat(26) })))), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.updateNode(makeNode()))), "NOT_FOUND");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeNode(newId()))), "NOT_FOUND");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeNode("bad"))), "INVALID_ARGUMENT");
  const node = makeNode();
  commit(store, (tx) => tx.createNode(node));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createNode(node))), "ALREADY_EXISTS");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createTask(makeTask(newId())))), "NOT_FOUND", "a task needs its service");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createTask(makeTask("bad-service")))), "INVALID_ARGUMENT");
});

test("remove with a version is compare-and-set; without one it is unconditional", () => {
  const store = new ObjectStore();
  const node = makeNode();
  commit(store, (tx) => tx.createNode(node));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeNode(node.id, { version: 99n }))), "VERSION_CONFLICT");
  commit(store, (tx) => tx.removeNode(node.id, { version: 1n }));
  assert.equal(store.getNode(node.id), undefined);
});

test("secrets: data immutable, keyed MAC (never a plain hash) and size computed, in-use secrets cannot be removed", () => {
  const store = new ObjectStore();
  const cluster = makeCluster();
  commit(store, (tx) => tx.createCluster(cluster));
  const secret = makeSecret("api-key", Buffer.from("s3cr3t"));
  commit(store, (tx) => tx.createSecret(secret));
  const read = store.getSecret(secret.id)!;
  assert.equal(read.sizeBytes, 6);
  // A plain SHA-256 of a short password gives it away to a guesser; the MAC needs the cluster's key.
  assert.notEqual(read.dataMac, createHash("sha256").update("s3cr3t").digest("hex"));
  assert.equal(read.dataMac, createHmac("sha256", cluster.secretMacKey).update("s3cr3t").digest("hex"));
  assert.equal(JSON.stringify(Secret.toJSON(read)).includes(createHash("sha256").update("s3cr3t").digest("hex")), false);
  // Label update through the redacted read keeps the data.
  read.spec!.labels = { team: "a" };
  commit(store, (tx) => tx.updateSecret(read));
  assert.deepEqual(store.getSecretData(secret.id), Buffer.from("s3cr3t"));
  assert.deepEqual(store.getSecret(secret.id)!.spec!.labels, { team: "a" });
  const changed = store.getSecret(secret.id)!;
  changed.spec!.data = Buffer.from("other");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.updateSecret(changed))), "INVALID_ARGUMENT");
  const service = makeService("app", { container: ContainerSpec.fromPartial({ image: "127.0.0.1:5000/x:1", secrets: [{ secretId: secret.id, secretName: "", target: "" }] }) });
  commit(store, (tx) => tx.createService(service));
  assert.equal(store.getService(service.id)!.spec!.container!.secrets[0]!.secretName, "api-key", "the store fills in the secret's name");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeSecret(secret.id))), "FAILED_PRECONDITION");
  commit(store, (tx) => { tx.removeService(service.id); tx.removeSecret(secret.id); });
  assert.equal(store.getSecret(secret.id), undefined);
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("app2", { container: service.spec!.container })))), "NOT_FOUND");
});

test("one cluster object; an update that would drop the CA key is refused", () => {
  const store = new ObjectStore();
  const cluster = makeCluster();
  commit(store, (tx) => tx.createCluster(cluster));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createCluster(makeCluster()))), "ALREADY_EXISTS");
  const c = store.getCluster()!;
  c.rootCa!.caKeyPem = Buffer.alloc(0);
  assert.equal(thrownCode(() => store.prepare((tx) => tx.updateCluster(c))), "INVALID_ARGUMENT");
});

test("kv: upsert, if-absent, compare-and-set and remove", () => {
  const store = new ObjectStore();
  commit(store, (tx) => tx.putValue("health", Buffer.from("1")));
  const v1 = store.getValue("health")!;
  assert.deepEqual(v1.value, Buffer.from("1"));
  assert.equal(v1.version, 1n);
  assert.equal(thrownCode(() => store.prepare((tx) => tx.putValue("health", Buffer.from("2"), { ifAbsent: true }))), "ALREADY_EXISTS");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.putValue("health", Buffer.from("2"), { ifVersion: 5n }))), "VERSION_CONFLICT");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.putValue("missing", Buffer.from("2"), { ifVersion: 5n }))), "NOT_FOUND");
  commit(store, (tx) => tx.putValue("health", Buffer.from("2"), { ifVersion: 1n }));
  assert.equal(store.getValue("health")!.version, 2n);
  commit(store, (tx) => tx.removeValue("health"));
  assert.equal(store.getValue("health"), undefined);
});

test("reads return copies: changing them does not change the store", () => {
  const store = new ObjectStore();
  const node = makeNode({}, { zone: "a" });
  commit(store, (tx) => tx.createNode(node));
  const read = store.getNode(node.id)!;
  read.spec!.labels["zone"] = "b";
  read.description!.hostname = "evil";
  store.listNodes()[0]!.spec!.labels["x"] = "y";
  assert.deepEqual(store.getNode(node.id)!.spec!.labels, { zone: "a" });
  assert.equal(store.getNode(node.id)!.description!.hostname, "host-1");
  // The caller's original object is not aliased either.
  node.spec!.labels["zone"] = "c";
  assert.equal(store.getNode(node.id)!.spec!.labels["zone"], "a");
  // Change objects are frozen.
  const result = commit(store, (tx) => tx.putValue("k", Buffer.from("v")));
  assert.throws(() => { (result.changes[0]!.object as { key: string }).key = "x"; }, TypeError);
});

test("listTasks filters by service and by node", () => {
  const store = new ObjectStore();
  const s1 = makeService("s1");
  const s2 = makeService("s2");
  const n1 = newId();
  const n2 = newId();
  const tasks = [makeTask(s1.id, { nodeId: n1 }), makeTask(s1.id, { nodeId: n2 }), makeTask(s2.id, { nodeId: n1 }), makeTask(s2.id)];
  commit(store, (tx) => { tx.createService(s1); tx.createService(s2); for (const t of tasks) tx.createTask(t); });
  const ids = (list: { id: string }[]) => list.map((t) => t.id).sort();
  assert.deepEqual(ids(store.listTasks({ serviceId: s1.id })), ids([tasks[0]!, tasks[1]!]));
  assert.deepEqual(ids(store.listTasks({ nodeId: n1 })), ids([tasks[0]!, tasks[2]!]));
  assert.deepEqual(ids(store.listTasks({ serviceId: s2.id, nodeId: n1 })), ids([tasks[2]!]));
  assert.equal(store.listTasks().length, 4);
  // Moving a task updates the node index.
  const moved = store.getTask(tasks[0]!.id)!;
  moved.nodeId = n2;
  commit(store, (tx) => tx.updateTask(moved));
  assert.deepEqual(ids(store.listTasks({ nodeId: n1 })), ids([tasks[2]!]));
  assert.equal(store.listTasks({ nodeId: n2 }).length, 2);
});

test("apply throws STORE_CORRUPT on bytes that are not a proposal, and refuses out-of-order indexes", () => {
  const store = new ObjectStore();
  for (const garbage of [Buffer.from("hello world, not protobuf"), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.alloc(0)]) {
    assert.throws(() => store.apply(garbage, { index: 1 }), (e: unknown) => isShoalError(e, "STORE_CORRUPT"));
  }
  // A decodable proposal with an action that has two targets is corrupt too.
  const bad = StoreProposal.encode({
    proposalId: newId(),
    timestamp: T0,
    actions: [StoreAction.fromPartial({ kind: StoreActionKind.STORE_ACTION_KIND_CREATE, node: makeNode(), kv: { key: "k" } })],
  }).finish();
  assert.throws(() => store.apply(bad, { index: 1 }), (e: unknown) => isShoalError(e, "STORE_CORRUPT"));
  const ok = store.prepare((tx) => tx.putValue("k", Buffer.from("v")));
  store.apply(ok, { index: 3 });
  assert.throws(() => store.apply(ok, { index: 3 }), (e: unknown) => isShoalError(e, "INTERNAL"));
  assert.throws(() => store.apply(ok, { index: 2 }), (e: unknown) => isShoalError(e, "INTERNAL"));
});

test("prepare refuses an empty or asynchronous transaction", () => {
  const store = new ObjectStore();
  assert.equal(thrownCode(() => store.prepare(() => {})), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => store.prepare((async () => {}) as unknown as () => void)), "INVALID_ARGUMENT");
});

test("apply uses the proposal's timestamp and id, never the local clock", () => {
  const clockA = new ManualClock(Date.parse("2030-05-05T00:00:00Z"));
  const leader = new ObjectStore({ clock: clockA });
  const follower = new ObjectStore({ clock: new ManualClock(0) });
  const service = makeService("web");
  const proposalId = newId();
  const bytes = leader.prepare((tx) => tx.createService(service), { proposalId });
  const a = leader.apply(bytes, { index: 1 });
  const b = follower.apply(bytes, { index: 1 });
  assert.equal(a.proposalId, proposalId);
  assert.equal(b.proposalId, proposalId);
  assert.deepEqual(follower.getService(service.id)!.meta!.createdAt, new Date("2030-05-05T00:00:00Z"));
  assert.deepEqual(leader.snapshot(), follower.snapshot());
});
