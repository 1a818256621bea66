// DESIGN rule 6: no read view returns secret data, the CA key or the unlock key. Each view is
// serialized and searched for marker bytes planted in the stored objects.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Cluster, ContainerSpec, Secret } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, redactCluster, redactSecret } from "../../src/state/index.js";
import { CA_KEY_MARKER, commit, makeCluster, makeSecret, makeService, TOKEN_MARKER, UNLOCK_MARKER } from "./fixtures.js";

const SECRET_MARKER = "SECRET-DATA-MARKER-41c2e8";

function serialized(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}

function assertAbsent(haystacks: (string | Uint8Array)[], marker: string): void {
  for (const h of haystacks) {
    const text = typeof h === "string" ? h : Buffer.from(h).toString("latin1");
    assert.ok(!text.includes(marker), `found ${marker} in a read view`);
    // Also look for the base64 form that JSON of a Buffer or a proto JSON view would carry.
    assert.ok(!text.includes(Buffer.from(marker).toString("base64").slice(0, 16)), `found base64 of ${marker}`);
  }
}

test("secret reads never carry data: get, find, list, transaction reads, change events, redactSecret", async () => {
  const store = new ObjectStore();
  const watch = store.watch({ tables: ["secrets"] });
  const secret = makeSecret("db", Buffer.from(SECRET_MARKER));
  const result = commit(store, (tx) => {
    tx.createSecret(secret);
    const inTx = tx.getSecret(secret.id)!;
    assert.equal(inTx.spec!.data.length, 0);
    assert.equal(tx.findSecretByName("db")!.spec!.data.length, 0);
  });
  const views: (string | Uint8Array)[] = [
    serialized(store.getSecret(secret.id)),
    serialized(store.findSecretByName("db")),
    serialized(store.listSecrets()),
    serialized(result.changes),
    Secret.encode(store.getSecret(secret.id)!).finish(),
    Secret.encode(redactSecret(secret)).finish(),
  ];
  const { value: event } = await watch.events[Symbol.asyncIterator]().next();
  views.push(serialized(event));
  watch.close();
  assertAbsent(views, SECRET_MARKER);
  // The marker really is in the store (the search above would otherwise prove nothing).
  assert.ok(Buffer.from(store.snapshot()).includes(Buffer.from(SECRET_MARKER)));
  assert.deepEqual(store.getSecretData(secret.id), Buffer.from(SECRET_MARKER));
  assert.equal(secret.spec!.data.toString(), SECRET_MARKER, "redactSecret does not modify its argument");
});

test("redactCluster drops the CA key and unlock key always, join tokens unless asked", () => {
  const store = new ObjectStore();
  commit(store, (tx) => tx.createCluster(makeCluster()));
  const full = store.getCluster()!;
  assert.ok(Buffer.from(Cluster.encode(full).finish()).includes(Buffer.from(CA_KEY_MARKER)), "the full cluster holds the key");
  const plain = redactCluster(full);
  const withTokens = redactCluster(full, { includeJoinTokens: true });
  for (const view of [plain, withTokens]) {
    assertAbsent([serialized(view), Cluster.encode(view).finish()], CA_KEY_MARKER);
    assertAbsent([serialized(view), Cluster.encode(view).finish()], UNLOCK_MARKER);
    assert.deepEqual(view.rootCa!.caCertPem, full.rootCa!.caCertPem, "the CA certificate is public and stays");
  }
  assertAbsent([serialized(plain), Cluster.encode(plain).finish()], TOKEN_MARKER);
  assert.equal(withTokens.rootCa!.joinTokens!.worker, TOKEN_MARKER + "-worker");
  assert.equal(withTokens.rootCa!.joinTokens!.previousManager, TOKEN_MARKER + "-previous-manager");
  assert.ok(full.unlockKey === UNLOCK_MARKER, "redactCluster does not modify its argument");
});

test("a service referencing a secret carries only its ID and name, never its data", () => {
  const store = new ObjectStore();
  const secret = makeSecret("db", Buffer.from(SECRET_MARKER));
  commit(store, (tx) => tx.createSecret(secret));
  commit(store, (tx) => tx.createService(makeService("app", { container: ContainerSpec.fromPartial({ image: "127.0.0.1:5000/x:1", secrets: [{ secretId: secret.id, secretName: "", target: "" }] }) })));
  assertAbsent([serialized(store.listServices())], SECRET_MARKER);
});

test("cluster change events and apply results carry no CA key, unlock key or join tokens", async () => {
  const store = new ObjectStore();
  const watch = store.watch({ tables: ["clusters"] });
  const result = commit(store, (tx) => tx.createCluster(makeCluster()));
  const { value: event } = await watch.events[Symbol.asyncIterator]().next();
  watch.close();
  for (const marker of [CA_KEY_MARKER, UNLOCK_MARKER, TOKEN_MARKER]) {
    assertAbsent([serialized(result.changes), serialized(event)], marker);
  }
});

test("tokens replaced by a rotation are redacted like the current ones (GetCluster, change events)", async () => {
  const store = new ObjectStore();
  const watch = store.watch({ tables: ["clusters"] });
  commit(store, (tx) => tx.createCluster(makeCluster()));
  const { value: event } = await watch.events[Symbol.asyncIterator]().next();
  watch.close();
  const full = store.getCluster()!;
  assert.equal(full.rootCa!.joinTokens!.previousWorker, TOKEN_MARKER + "-previous-worker", "the store keeps them");
  const plain = redactCluster(full);
  assert.equal(plain.rootCa!.joinTokens!.previousWorker, "");
  assert.equal(plain.rootCa!.joinTokens!.previousManager, "");
  assertAbsent([serialized(plain), Cluster.encode(plain).finish(), serialized(event)], "-previous-");
});
