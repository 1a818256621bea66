// Constraint parsing and matching, service zones, and the secret zone rule (DESIGN rule 7).
import { test } from "node:test";
import assert from "node:assert/strict";
import { newId } from "../../src/base/ids.js";
import { ContainerSpec, NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { nodeMatches, nodeMatchesService, nodeZone, ObjectStore, parseConstraint, serviceZone } from "../../src/state/index.js";
import { commit, makeNode, makeSecret, makeService, thrownCode } from "./fixtures.js";

test("parseConstraint accepts every documented form", () => {
  const id = newId();
  assert.deepEqual(parseConstraint("node.labels.zone==pci"), { field: "label", key: "zone", op: "==", value: "pci" });
  assert.deepEqual(parseConstraint("node.labels.disk != ssd"), { field: "label", key: "disk", op: "!=", value: "ssd" });
  assert.deepEqual(parseConstraint("node.role==manager"), { field: "role", op: "==", value: "manager" });
  assert.deepEqual(parseConstraint("node.role!=worker"), { field: "role", op: "!=", value: "worker" });
  assert.deepEqual(parseConstraint(`node.id==${id}`), { field: "id", op: "==", value: id });
  assert.deepEqual(parseConstraint("node.hostname==db-1.example"), { field: "hostname", op: "==", value: "db-1.example" });
  assert.deepEqual(parseConstraint("node.labels.a.b==c"), { field: "label", key: "a.b", op: "==", value: "c" });
});

test("parseConstraint refuses malformed input with INVALID_ARGUMENT and the accepted forms", () => {
  const bad = [
    "",
    "node.labels.zone=pci",
    "node.labels.zone",
    "node.labels.==x",
    "node.labels.zone==",
    "node.labels.zone==a==b",
    "node.labels.zone==a!=b",
    "node.role==admin",
    "node.id==not-an-id",
    "node.platform==linux",
    "labels.zone==x",
    "node.labels.zone==has space",
    "node.labels.zone==bad/zone",
    "node.labels.k==" + "v".repeat(300),
  ];
  for (const expr of bad) {
    assert.equal(thrownCode(() => parseConstraint(expr)), "INVALID_ARGUMENT", expr);
  }
  assert.throws(() => parseConstraint("node.foo==x"), /node\.labels\.KEY==VALUE/);
});

test("nodeMatches: labels, role, id, hostname; a missing label fails == and passes !=", () => {
  const node = makeNode({ role: NodeRole.NODE_ROLE_MANAGER, description: { hostname: "db-1", platform: "", engineVersion: "", engineLabels: {}, executors: [], resources: undefined } }, { disk: "ssd" });
  assert.equal(nodeMatches(node, ["node.labels.disk==ssd"]), true);
  assert.equal(nodeMatches(node, ["node.labels.disk!=ssd"]), false);
  assert.equal(nodeMatches(node, ["node.labels.gpu==yes"]), false);
  assert.equal(nodeMatches(node, ["node.labels.gpu!=yes"]), true);
  assert.equal(nodeMatches(node, ["node.role==manager", "node.hostname==db-1"]), true);
  assert.equal(nodeMatches(node, ["node.role==worker"]), false);
  assert.equal(nodeMatches(node, [`node.id==${node.id}`]), true);
  assert.equal(nodeMatches(node, [`node.id!=${node.id}`]), false);
  assert.equal(nodeMatches(node, [parseConstraint("node.hostname!=db-1")]), false);
  assert.equal(nodeMatches(node, []), true);
  // A node without an issued certificate goes by its desired role.
  const pending = makeNode({ role: NodeRole.NODE_ROLE_UNSPECIFIED, spec: { desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: 0, labels: {} } });
  assert.equal(nodeMatches(pending, ["node.role==manager"]), true);
});

test("zones: spec.zone or a zone constraint; conflicting zones are INVALID_ARGUMENT", () => {
  assert.equal(serviceZone({ zone: "", constraints: [] }), "default");
  assert.equal(serviceZone({ zone: "pci", constraints: [] }), "pci");
  assert.equal(serviceZone({ zone: "", constraints: ["node.labels.zone==pci"] }), "pci");
  assert.equal(serviceZone({ zone: "pci", constraints: ["node.labels.zone==pci", "node.labels.zone!=dmz"] }), "pci");
  assert.equal(thrownCode(() => serviceZone({ zone: "pci", constraints: ["node.labels.zone==dmz"] })), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => serviceZone({ zone: "", constraints: ["node.labels.zone==a", "node.labels.zone==b"] })), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => serviceZone({ zone: "bad zone", constraints: [] })), "INVALID_ARGUMENT");
  const store = new ObjectStore();
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("s", { zone: "a", constraints: ["node.labels.zone==b"] })))), "INVALID_ARGUMENT");
});

test("nodeMatchesService places a service only on nodes of its zone", () => {
  const pciNode = makeNode({}, { zone: "pci" });
  const plainNode = makeNode();
  assert.equal(nodeZone(plainNode), "default");
  const pci = makeService("p", { zone: "pci" }).spec!;
  const plain = makeService("d").spec!;
  assert.equal(nodeMatchesService(pciNode, pci), true);
  assert.equal(nodeMatchesService(plainNode, pci), false);
  assert.equal(nodeMatchesService(pciNode, plain), false, "a default-zone service does not run in zone pci");
  assert.equal(nodeMatchesService(plainNode, plain), true);
});

test("a secret of zone A cannot be attached to a service of zone B, at prepare and at apply", () => {
  const store = new ObjectStore();
  const secretA = makeSecret("card-key", Buffer.from("k"), "a");
  const unzoned = makeSecret("shared", Buffer.from("s"));
  commit(store, (tx) => { tx.createSecret(secretA); tx.createSecret(unzoned); });
  const refs = (id: string) => ContainerSpec.fromPartial({ image: "127.0.0.1:5000/x:1", secrets: [{ secretId: id, secretName: "", target: "" }] });
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("b", { zone: "b", container: refs(secretA.id) })))), "PERMISSION_DENIED");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("d", { container: refs(secretA.id) })))), "PERMISSION_DENIED");
  commit(store, (tx) => tx.createService(makeService("a", { constraints: ["node.labels.zone==a"], container: refs(secretA.id) })));
  commit(store, (tx) => tx.createService(makeService("b", { zone: "b", container: refs(unzoned.id) })));
  // Moving the service to another zone later is refused too (update path).
  const a = store.findServiceByName("a")!;
  a.spec!.constraints = ["node.labels.zone==b"];
  assert.equal(thrownCode(() => store.prepare((tx) => tx.updateService(a))), "PERMISSION_DENIED");
});

test("the store accepts exactly the zones the CA can write into a node certificate", async () => {
  const ca = await import("../../src/ca/index.js");
  const state = await import("../../src/state/index.js");
  const samples = ["a", "pci", "a.b_c-d", "z".repeat(63), "z".repeat(64), "z".repeat(65), ".a", "-a", "a/b", "a b", ""];
  for (const zone of samples) {
    assert.equal(state.isValidZone(zone), ca.isValidZone(zone), `zone ${JSON.stringify(zone)}: state and CA disagree`);
  }
  assert.equal(state.DEFAULT_ZONE, ca.DEFAULT_ZONE);
  // A node labelled with a zone the CA refuses could never get (or renew) a certificate for it.
  const store = new ObjectStore();
  const tooLong = "z".repeat(64);
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createNode(makeNode({}, { zone: tooLong })))), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("s", { zone: tooLong })))), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => parseConstraint(`node.labels.zone==${tooLong}`)), "INVALID_ARGUMENT");
  commit(store, (tx) => tx.createNode(makeNode({}, { zone: "z".repeat(63) })));
});
