// The event deriver on hand-made changes: each kind of event, one event per task state change (none
// for a heartbeat or a message-only update), and no secret data, token, CA key or unlock key in any
// event, also when the change views are made by a real store.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Cluster,
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  Service,
  ServiceMode,
  Task,
  TaskState,
  UpdateState,
} from "../../src/proto/shoal/v1/objects.js";
import { ClusterEvent } from "../../src/proto/shoal/v1/control.js";
import { deriveEvents, ObjectStore, type StoreChange, type StoreEvent } from "../../src/state/index.js";
import { CA_KEY_MARKER, commit, makeCluster, makeNode, makeSecret, makeService, makeTask, SECRET_MAC_KEY_MARKER, TOKEN_MARKER, UNLOCK_MARKER } from "./fixtures.js";

const CTX = { timeMs: Date.parse("2026-03-01T10:00:00Z"), index: 42 };
const derive = (change: StoreChange, more: object = {}) => deriveEvents(change, { ...CTX, ...more });
const brief = (events: ClusterEvent[]) => events.map((e) => `${e.type} ${e.action}`);

test("node: create, down, ready, label, availability, promote, role, remove", () => {
  const node = makeNode({ status: { state: NodeState.NODE_STATE_READY, message: "", addr: "", lastHeartbeat: undefined } }, { zone: "a" });
  const created = derive({ table: "nodes", kind: "create", object: node });
  assert.deepEqual(brief(created), ["node create"]);
  assert.equal(created[0]!.name, "host-1");
  assert.equal(created[0]!.id, node.id);
  assert.equal(created[0]!.attributes["zone"], "a");
  assert.equal(created[0]!.index, 42n);
  assert.equal(created[0]!.time!.toISOString(), "2026-03-01T10:00:00.000Z");

  const down = Node.fromPartial({ ...node, status: { state: NodeState.NODE_STATE_DOWN } });
  const d = derive({ table: "nodes", kind: "update", object: down, oldObject: node });
  assert.deepEqual(brief(d), ["node down"]);
  assert.deepEqual([d[0]!.attributes["state"], d[0]!.attributes["old_state"]], ["down", "ready"]);
  assert.deepEqual(brief(derive({ table: "nodes", kind: "update", object: node, oldObject: down })), ["node ready"]);

  // A heartbeat (status timestamp only) is no event.
  const beat = Node.fromPartial({ ...node, status: { ...node.status!, lastHeartbeat: new Date() } });
  assert.deepEqual(derive({ table: "nodes", kind: "update", object: beat, oldObject: node }), []);

  const relabelled = Node.fromPartial({ ...node, spec: { ...node.spec!, labels: { zone: "b", tier: "web" } } });
  const l = derive({ table: "nodes", kind: "update", object: relabelled, oldObject: node });
  assert.deepEqual(brief(l), ["node label"]);
  assert.equal(l[0]!.attributes["labels_added"], "tier=web,zone=b");
  assert.equal(l[0]!.attributes["old_zone"], "a");
  assert.equal(l[0]!.attributes["zone"], "b");
  const unlabelled = Node.fromPartial({ ...node, spec: { ...node.spec!, labels: {} } });
  assert.equal(derive({ table: "nodes", kind: "update", object: unlabelled, oldObject: node })[0]!.attributes["labels_removed"], "zone");

  const drained = Node.fromPartial({ ...node, spec: { ...node.spec!, availability: NodeAvailability.NODE_AVAILABILITY_DRAIN } });
  const a = derive({ table: "nodes", kind: "update", object: drained, oldObject: node });
  assert.deepEqual(brief(a), ["node availability"]);
  assert.deepEqual([a[0]!.attributes["availability"], a[0]!.attributes["old_availability"]], ["drain", "active"]);

  const promoted = Node.fromPartial({ ...node, spec: { ...node.spec!, desiredRole: NodeRole.NODE_ROLE_MANAGER } });
  assert.deepEqual(brief(derive({ table: "nodes", kind: "update", object: promoted, oldObject: node })), ["node promote"]);
  const manager = Node.fromPartial({ ...promoted, role: NodeRole.NODE_ROLE_MANAGER });
  const r = derive({ table: "nodes", kind: "update", object: manager, oldObject: promoted });
  assert.deepEqual(brief(r), ["node role"]);
  assert.deepEqual([r[0]!.attributes["role"], r[0]!.attributes["old_role"]], ["manager", "worker"]);

  assert.deepEqual(brief(derive({ table: "nodes", kind: "remove", object: node })), ["node remove"]);
});

test("service: create, update (spec version), scale (replicas old→new), update state, remove once", () => {
  const svc = Service.fromPartial({ ...makeService("web", { replicas: 2 }), specVersion: 1n });
  const c = derive({ table: "services", kind: "create", object: svc });
  assert.deepEqual(brief(c), ["service create"]);
  assert.equal(c[0]!.name, "web");
  assert.equal(c[0]!.attributes["replicas"], "2");

  const scaled = Service.fromPartial({ ...svc, spec: { ...svc.spec!, replicas: 5 }, specVersion: 2n });
  const s = derive({ table: "services", kind: "update", object: scaled, oldObject: svc });
  assert.deepEqual(brief(s), ["service scale"], "a replica change alone is a scale, not an update");
  assert.deepEqual([s[0]!.attributes["replicas"], s[0]!.attributes["old_replicas"]], ["5", "2"]);

  const updated = Service.fromPartial({ ...scaled, spec: { ...scaled.spec!, container: { ...scaled.spec!.container!, env: ["V=2"] } }, specVersion: 3n });
  const u = derive({ table: "services", kind: "update", object: updated, oldObject: scaled });
  assert.deepEqual(brief(u), ["service update"]);
  assert.deepEqual([u[0]!.attributes["spec_version"], u[0]!.attributes["old_spec_version"]], ["3", "2"]);

  const both = Service.fromPartial({ ...updated, spec: { ...updated.spec!, replicas: 1, container: { ...updated.spec!.container!, image: "r/x:2" } }, specVersion: 4n });
  const b = derive({ table: "services", kind: "update", object: both, oldObject: updated });
  assert.deepEqual(brief(b), ["service update", "service scale"]);
  assert.equal(b[0]!.attributes["old_image"], "127.0.0.1:5000/busybox:1");

  // The orchestrator's writes that leave the spec alone are no event; an update state change is one.
  assert.deepEqual(derive({ table: "services", kind: "update", object: both, oldObject: both }), []);
  const rolling = Service.fromPartial({ ...both, updateStatus: { state: UpdateState.UPDATE_STATE_UPDATING } });
  const us = derive({ table: "services", kind: "update", object: rolling, oldObject: both });
  assert.deepEqual(brief(us), ["service update_state"]);
  assert.equal(us[0]!.attributes["update_state"], "updating");

  const global = Service.fromPartial({ ...svc, spec: { ...svc.spec!, mode: ServiceMode.SERVICE_MODE_GLOBAL } });
  assert.equal(derive({ table: "services", kind: "create", object: global })[0]!.attributes["mode"], "global");

  // `service rm`: the mark is the event; the deletion after the tasks ended is not a second one.
  const removing = Service.fromPartial({ ...both, pendingDelete: true });
  assert.deepEqual(brief(derive({ table: "services", kind: "update", object: removing, oldObject: both })), ["service remove"]);
  assert.deepEqual(derive({ table: "services", kind: "remove", object: removing }), []);
  assert.deepEqual(brief(derive({ table: "services", kind: "remove", object: both })), ["service remove"]);
});

test("task: one event per state change with service, node, zone, state and old_state; none for a message-only update", () => {
  const t0 = Task.fromPartial({ ...makeTask("s".padEnd(25, "0"), { slot: 3, zone: "a" }), serviceName: "web", status: { state: TaskState.TASK_STATE_PENDING } });
  const c = derive({ table: "tasks", kind: "create", object: t0 });
  assert.deepEqual(brief(c), ["task create"]);
  assert.equal(c[0]!.name, "web.3");
  assert.equal(c[0]!.attributes["state"], "pending");

  const assigned = Task.fromPartial({ ...t0, nodeId: "n".padEnd(25, "0"), status: { state: TaskState.TASK_STATE_ASSIGNED } });
  const a = derive({ table: "tasks", kind: "update", object: assigned, oldObject: t0 });
  assert.deepEqual(brief(a), ["task state"]);
  assert.deepEqual(
    { service: a[0]!.attributes["service"], node: a[0]!.attributes["node"], zone: a[0]!.attributes["zone"], state: a[0]!.attributes["state"], old: a[0]!.attributes["old_state"] },
    { service: "web", node: "n".padEnd(25, "0"), zone: "a", state: "assigned", old: "pending" },
  );
  const messageOnly = Task.fromPartial({ ...assigned, status: { ...assigned.status!, message: "pulling", timestamp: new Date() } });
  assert.deepEqual(derive({ table: "tasks", kind: "update", object: messageOnly, oldObject: assigned }), []);
  const desiredOnly = Task.fromPartial({ ...assigned, desiredState: TaskState.TASK_STATE_SHUTDOWN });
  assert.deepEqual(derive({ table: "tasks", kind: "update", object: desiredOnly, oldObject: assigned }), []);
  const failed = Task.fromPartial({ ...assigned, status: { state: TaskState.TASK_STATE_FAILED, exitCode: 137 } });
  const f = derive({ table: "tasks", kind: "update", object: failed, oldObject: assigned });
  assert.equal(f[0]!.attributes["exit_code"], "137");
  // A global service's task is named after its node.
  const g = Task.fromPartial({ ...t0, slot: 0, nodeId: "n".padEnd(25, "0") });
  assert.equal(derive({ table: "tasks", kind: "create", object: g })[0]!.name, `web.${"n".padEnd(25, "0")}`);
});

test("secret: create and remove carry name and zone only", () => {
  const secret = makeSecret("db-password", Buffer.from("hunter2-SECRETDATA"), "pci");
  for (const kind of ["create", "remove"] as const) {
    const e = derive({ table: "secrets", kind, object: secret });
    assert.deepEqual(brief(e), [`secret ${kind}`]);
    assert.equal(e[0]!.name, "db-password");
    assert.deepEqual(e[0]!.attributes, { zone: "pci" });
    assert.doesNotMatch(JSON.stringify(ClusterEvent.toJSON(e[0]!)), /SECRETDATA|hunter2/);
  }
});

test("ca: rotation started / target replaced / finished, cert expiry, token rotation, autolock, revocation", () => {
  const c0 = makeCluster();
  const cert = (s: string) => Buffer.from(`-----BEGIN CERTIFICATE-----\n${s}\n-----END CERTIFICATE-----\n`);
  const rotating = Cluster.fromPartial({ ...c0, rootCa: { ...c0.rootCa!, rootRotation: { caCertPem: cert("NEW1"), caKeyPem: Buffer.from("k"), crossSignedCaCertPem: cert("X") } } });
  const upd = (object: Cluster, oldObject: Cluster, more: object = {}) => derive({ table: "clusters", kind: "update", object, oldObject }, more);
  const started = upd(rotating, c0);
  assert.deepEqual(brief(started), ["ca rotate"]);
  assert.equal(started[0]!.attributes["phase"], "start");
  assert.equal(started[0]!.id, c0.id);
  const replaced = Cluster.fromPartial({ ...rotating, rootCa: { ...rotating.rootCa!, rootRotation: { ...rotating.rootCa!.rootRotation!, caCertPem: cert("NEW2") } } });
  const replace = upd(replaced, rotating);
  assert.equal(replace[0]!.attributes["phase"], "replace");
  const finished = Cluster.fromPartial({ ...c0, rootCa: { ...c0.rootCa!, caDigest: "1".repeat(50), rootRotation: undefined } });
  assert.deepEqual(upd(finished, replaced)[0]!.attributes, { phase: "end", result: "done" });

  const expiry = Cluster.fromPartial({ ...c0, spec: { ...c0.spec!, caConfig: { nodeCertExpirySeconds: 720n * 3600n } } });
  const x = upd(expiry, c0);
  assert.deepEqual(brief(x), ["ca cert-expiry"]);
  assert.deepEqual(x[0]!.attributes, { expiry: "720h", old_expiry: "default" });

  const tok = upd(c0, c0, { rotatedJoinTokens: ["worker"] });
  assert.deepEqual(brief(tok), ["ca token-rotate"]);
  assert.equal(tok[0]!.attributes["role"], "worker");

  const locked = Cluster.fromPartial({ ...c0, spec: { ...c0.spec!, encryptionConfig: { autolockManagers: true } } });
  assert.deepEqual(upd(locked, c0)[0]!.attributes, { autolock: "true" });

  const revoked = Cluster.fromPartial({ ...c0, revocationList: { nodes: [{ nodeId: "n".padEnd(25, "0"), serials: ["0A", "0B"] }] } });
  const rv = upd(revoked, c0);
  assert.deepEqual(brief(rv), ["ca revoke"]);
  assert.deepEqual(rv[0]!.attributes, { node: "n".padEnd(25, "0"), serials: "2" });
  assert.deepEqual(upd(revoked, revoked), [], "an entry already revoked is no new event");

  // Everything above, as JSON: no key, token, unlock key or MAC key (the full cluster was given here).
  const all = JSON.stringify([started, replace, x, tok, rv].flat().map((e) => ClusterEvent.toJSON(e)));
  for (const marker of [CA_KEY_MARKER, TOKEN_MARKER, UNLOCK_MARKER, SECRET_MAC_KEY_MARKER]) assert.ok(!all.includes(marker), `${marker} leaked into an event`);
});

test("events from a real store's change views: no secret data, tokens or keys, and node rm gives remove + revoke", () => {
  const store = new ObjectStore();
  const seen: StoreEvent[] = [];
  store.watch({}, { onEvent: (e) => seen.push(e) });
  const cluster = makeCluster();
  const node = makeNode({ certificate: { status: 2, csr: Buffer.alloc(0), certificate: Buffer.alloc(0), serial: "0AF1", notAfter: new Date("2027-01-01T00:00:00Z"), role: 1, zone: "", issuedSerials: ["0AF1"], lastNotAfter: undefined } });
  commit(store, (tx) => {
    tx.createCluster(cluster);
    tx.createNode(node);
  });
  const data = Buffer.from("SECRETBYTES-e91c");
  commit(store, (tx) => tx.createSecret(makeSecret("api", data)));
  const full = store.getCluster()!;
  commit(store, (tx) => tx.updateCluster({ ...full, rootCa: { ...full.rootCa!, joinTokens: { ...full.rootCa!.joinTokens!, worker: TOKEN_MARKER + "-rotated" } } }));
  commit(store, (tx) => tx.removeNodeAndRevoke(node.id, { removedAt: new Date("2026-01-02T00:00:00Z") }));
  const events = seen.flatMap((e) => (e.kind === "reset" ? [] : derive(e)));
  assert.deepEqual(brief(events), ["node create", "secret create", "node remove", "ca revoke"]);
  assert.equal(events.find((e) => e.action === "revoke")!.attributes["node"], node.id);
  const bytes = Buffer.concat(events.map((e) => ClusterEvent.encode(e).finish()));
  for (const marker of [data.toString(), CA_KEY_MARKER, TOKEN_MARKER, UNLOCK_MARKER, SECRET_MAC_KEY_MARKER]) assert.ok(!bytes.includes(Buffer.from(marker)), `${marker} leaked into an event's bytes`);
});
