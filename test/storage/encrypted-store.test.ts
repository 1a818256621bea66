// EncryptedStore: round trips, and every way a stored value can be wrong stops the caller with
// STORE_CORRUPT naming the key, while good keys keep working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClassicLevel } from "classic-level";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, type StoreOp } from "../../src/storage/index.js";
import { isShoalError } from "../../src/base/errors.js";
import { tempDir } from "./temp-dir.js";

const b = (s: string): Buffer => Buffer.from(s, "utf8");

async function collect(it: AsyncIterable<[Buffer, Buffer]>): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for await (const [k, v] of it) out.push([k.toString(), v.toString()]);
  return out;
}

async function rawEdit(dir: string, edit: (db: ClassicLevel<Buffer, Buffer>) => Promise<void>): Promise<void> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
  await db.open();
  await edit(db);
  await db.close();
}

function isCorruptNaming(key: Buffer) {
  return (err: unknown): boolean => isShoalError(err, "STORE_CORRUPT") && err.message.includes(key.toString("hex"));
}

test("put/get/del/batch/iterate/deleteRange round trip", async (t) => {
  const dir = tempDir(t, "store");
  const key = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: key });
  await store.put(b("a"), b("1"), { sync: true });
  await store.batch([
    { type: "put", key: b("b"), value: b("2") },
    { type: "put", key: b("c"), value: b("3") },
    { type: "put", key: b("d"), value: Buffer.alloc(0) },
    { type: "del", key: b("a") },
  ]);
  assert.equal(await store.get(b("a")), undefined);
  assert.equal((await store.get(b("b")))?.toString(), "2");
  assert.equal((await store.get(b("d")))?.length, 0);
  assert.deepEqual(await collect(store.iterate({})), [["b", "2"], ["c", "3"], ["d", ""]]);
  assert.deepEqual(await collect(store.iterate({ gt: b("b"), lte: b("d"), reverse: true })), [["d", ""], ["c", "3"]]);
  assert.deepEqual(await collect(store.iterate({ gte: b("b"), limit: 1 })), [["b", "2"]]);
  assert.equal(await store.deleteRange({ gte: b("b"), lt: b("d") }), 2);
  assert.deepEqual(await collect(store.iterate({})), [["d", ""]]);
  await store.del(b("d"));
  await store.close();

  const again = await EncryptedStore.open(dir, { current: key });
  assert.deepEqual(await collect(again.iterate({})), []);
  await again.close();
  key.dispose();
});

test("values are sealed on disk: a raw read does not see the plaintext", async (t) => {
  const dir = tempDir(t, "store");
  const key = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: key });
  await store.put(b("k"), b("plaintext-value-xyz"));
  await store.close();
  await rawEdit(dir, async (db) => {
    const raw = await db.get(b("k"));
    assert.ok(raw !== undefined);
    assert.equal(raw.includes(b("plaintext-value-xyz")), false);
    assert.equal(raw.length, "plaintext-value-xyz".length + 1 + 4 + 1 + 24 + 16);
    assert.deepEqual(raw.subarray(1, 5), key.id);
  });
  key.dispose();
});

test("a value copied to another key fails to open; the original still opens", async (t) => {
  const dir = tempDir(t, "store");
  const key = DataKey.generate();
  let store = await EncryptedStore.open(dir, { current: key });
  await store.put(b("secret/alice"), b("alice's value"));
  await store.put(b("secret/bob"), b("bob's value"));
  await store.close();
  await rawEdit(dir, async (db) => {
    await db.put(b("secret/bob"), (await db.get(b("secret/alice")))!);
  });
  store = await EncryptedStore.open(dir, { current: key });
  await assert.rejects(store.get(b("secret/bob")), isCorruptNaming(b("secret/bob")));
  assert.equal((await store.get(b("secret/alice")))?.toString(), "alice's value");
  await store.close();
  key.dispose();
});

test("tampering any byte of a stored value gives STORE_CORRUPT, and good keys keep working", async (t) => {
  const dir = tempDir(t, "store");
  const key = DataKey.generate();
  let store = await EncryptedStore.open(dir, { current: key });
  await store.put(b("good"), b("fine"));
  await store.put(b("victim"), b("0123456789"));
  await store.close();
  let original: Buffer | undefined;
  await rawEdit(dir, async (db) => {
    original = await db.get(b("victim"));
  });
  assert.ok(original !== undefined);
  // Format byte, key ID, crypto version, nonce, ciphertext, tag, then truncation and extension.
  const variants: Buffer[] = [];
  for (const i of [0, 1, 4, 5, 6, 29, 30, original.length - 1]) {
    const v = Buffer.from(original);
    v[i] = v[i]! ^ 0x80;
    variants.push(v);
  }
  variants.push(original.subarray(0, original.length - 1), original.subarray(0, 3), Buffer.alloc(0), Buffer.concat([original, b("x")]));
  for (const variant of variants) {
    await rawEdit(dir, (db) => db.put(b("victim"), variant));
    store = await EncryptedStore.open(dir, { current: key });
    await assert.rejects(store.get(b("victim")), isCorruptNaming(b("victim")));
    assert.equal((await store.get(b("good")))?.toString(), "fine");
    await store.close();
  }
  key.dispose();
});

test("iteration stops at a corrupt value: earlier values are yielded, nothing after it is", async (t) => {
  const dir = tempDir(t, "store");
  const key = DataKey.generate();
  let store = await EncryptedStore.open(dir, { current: key });
  await store.batch(["k1", "k2", "k3", "k4"].map((k): StoreOp => ({ type: "put", key: b(k), value: b(`v-${k}`) })));
  await store.close();
  await rawEdit(dir, async (db) => {
    const v = (await db.get(b("k3")))!;
    v[v.length - 1] = v[v.length - 1]! ^ 1;
    await db.put(b("k3"), v);
  });
  store = await EncryptedStore.open(dir, { current: key });
  const seen: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const [k] of store.iterate({})) seen.push(k.toString());
    })(),
    isCorruptNaming(b("k3")),
  );
  assert.deepEqual(seen, ["k1", "k2"]);
  assert.equal((await store.get(b("k4")))?.toString(), "v-k4");
  await store.close();
  key.dispose();
});

test("reopening with the wrong DEK gives STORE_CORRUPT naming the key, without the value", async (t) => {
  const dir = tempDir(t, "store");
  const right = DataKey.generate();
  const wrong = DataKey.generate();
  let store = await EncryptedStore.open(dir, { current: right });
  const longKey = Buffer.alloc(100, 0xab);
  await store.put(longKey, b("the-value-text"));
  await store.close();
  store = await EncryptedStore.open(dir, { current: wrong });
  await assert.rejects(store.get(longKey), (err: unknown) => {
    assert.ok(isShoalError(err, "STORE_CORRUPT"));
    assert.match(err.message, /abababab.*… \(100 bytes\)/);
    assert.match(err.message, new RegExp(right.idHex));
    assert.equal(err.message.includes("the-value-text"), false);
    return true;
  });
  await assert.rejects(collect(store.iterate({})), (err: unknown) => isShoalError(err, "STORE_CORRUPT"));
  await store.close();
  // A key with the same ID but different bytes (forced by copying the header) is caught by the AEAD.
  right.dispose();
  wrong.dispose();
});

test("operations after close fail with STORE_CLOSED; a second open of a live store is refused", async (t) => {
  const dir = tempDir(t, "store");
  const key = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: key });
  await assert.rejects(EncryptedStore.open(dir, { current: key }), (err: unknown) => isShoalError(err, "UNAVAILABLE"));
  await store.close();
  await store.close();
  const closed = (err: unknown): boolean => isShoalError(err, "STORE_CLOSED");
  await assert.rejects(store.get(b("a")), closed);
  await assert.rejects(store.put(b("a"), b("1")), closed);
  await assert.rejects(store.batch([{ type: "del", key: b("a") }]), closed);
  await assert.rejects(store.deleteRange({}), closed);
  await assert.rejects(collect(store.iterate({})), closed);
  key.dispose();
});

test("DEK rotation: new writes use the new key, old values stay readable until reencryptAll", async (t) => {
  const dir = tempDir(t, "store");
  const oldKey = DataKey.generate();
  const newKey = DataKey.generate();
  let store = await EncryptedStore.open(dir, { current: oldKey });
  const n = 700; // more than one re-encryption chunk
  const ops: StoreOp[] = [];
  for (let i = 0; i < n; i++) ops.push({ type: "put", key: b(`key-${String(i).padStart(4, "0")}`), value: b(`value-${i}`) });
  await store.batch(ops);
  store.rotateDek(newKey);
  assert.throws(() => store.rotateDek(DataKey.generate()), (err: unknown) => isShoalError(err, "FAILED_PRECONDITION"));
  await store.put(b("fresh"), b("after-rotation"));
  assert.equal((await store.get(b("key-0001")))?.toString(), "value-1");
  await store.close();

  // Only the new key: the old values do not open, the fresh one does.
  store = await EncryptedStore.open(dir, { current: newKey });
  assert.equal((await store.get(b("fresh")))?.toString(), "after-rotation");
  await assert.rejects(store.get(b("key-0001")), (err: unknown) => isShoalError(err, "STORE_CORRUPT"));
  await store.close();

  store = await EncryptedStore.open(dir, { current: oldKey, pending: newKey });
  const result = await store.reencryptAll();
  assert.equal(result.rewrittenValues, n);
  assert.equal(result.retired, oldKey);
  assert.equal(store.dataKeys().current, newKey);
  assert.equal(store.dataKeys().pending, undefined);
  await store.close();
  oldKey.dispose();

  store = await EncryptedStore.open(dir, { current: newKey });
  const all = await collect(store.iterate({}));
  assert.equal(all.length, n + 1);
  assert.deepEqual(all.find(([k]) => k === "key-0005"), ["key-0005", "value-5"]);
  assert.deepEqual(all.find(([k]) => k === "fresh"), ["fresh", "after-rotation"]);
  assert.equal((await store.reencryptAll()).rewrittenValues, 0);
  await store.close();
  newKey.dispose();
});

test("writes racing with reencryptAll are never overwritten by stale re-encrypted values", async (t) => {
  const dir = tempDir(t, "store");
  const oldKey = DataKey.generate();
  const newKey = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: oldKey });
  const n = 2000;
  const ops: StoreOp[] = [];
  for (let i = 0; i < n; i++) ops.push({ type: "put", key: b(`k${String(i).padStart(5, "0")}`), value: b("old") });
  await store.batch(ops);
  store.rotateDek(newKey);
  const rotation = store.reencryptAll();
  const writes: Promise<void>[] = [];
  for (let i = 0; i < n; i += 7) writes.push(store.put(b(`k${String(i).padStart(5, "0")}`), b("new")));
  await Promise.all([rotation, ...writes]);
  for (let i = 0; i < n; i++) {
    const v = (await store.get(b(`k${String(i).padStart(5, "0")}`)))?.toString();
    assert.equal(v, i % 7 === 0 ? "new" : "old", `key ${i}`);
  }
  await store.close();
  oldKey.dispose();
  const reopened = await EncryptedStore.open(dir, { current: newKey });
  assert.equal((await collect(reopened.iterate({}))).length, n);
  await reopened.close();
  newKey.dispose();
});
