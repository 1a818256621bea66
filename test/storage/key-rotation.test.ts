// Switching autolock on and off, rotating the unlock key and the DEK, without losing data.
import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { DataKey, generateUnlockKey, kekFromUnlockKey } from "../../src/crypto/index.js";
import {
  EncryptedStore,
  dataDirPaths,
  isDekFileWrapped,
  isNodeKeyEncrypted,
  readDekFile,
  readNodeKey,
  rewrapKeys,
  rotateStoreDek,
  writeDekFile,
  writeNodeKey,
  type StoreOp,
} from "../../src/storage/index.js";
import { isShoalError } from "../../src/base/errors.js";
import { tempDir } from "./temp-dir.js";

const b = (s: string): Buffer => Buffer.from(s);

async function provision(dataDir: string) {
  const paths = dataDirPaths(dataDir);
  const dek = DataKey.generate();
  await writeDekFile(paths.dekFile, { current: dek });
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  await writeNodeKey(paths.nodeKeyFile, privateKey);
  const store = await EncryptedStore.open(paths.stateDir, { current: dek });
  const ops: StoreOp[] = [];
  for (let i = 0; i < 300; i++) ops.push({ type: "put", key: b(`obj/${i}`), value: b(`payload ${i}`) });
  await store.batch(ops, { sync: true });
  await store.close();
  return { paths, dek, publicKey };
}

function signsFor(key: Awaited<ReturnType<typeof readNodeKey>>, publicKey: ReturnType<typeof generateKeyPairSync>["publicKey"]): boolean {
  return verify("sha256", b("m"), publicKey, sign("sha256", b("m"), key));
}

async function assertDataIntact(stateDir: string, keys: { current: DataKey; pending?: DataKey }): Promise<void> {
  const store = await EncryptedStore.open(stateDir, keys);
  let n = 0;
  for await (const [k, v] of store.iterate({})) {
    assert.equal(v.toString(), `payload ${k.toString().slice(4)}`);
    n++;
  }
  assert.equal(n, 300);
  await store.close();
}

test("autolock on, unlock-key rotation, autolock off: both files re-wrapped, data intact", async (t) => {
  const dataDir = tempDir(t, "rewrap");
  const { paths, dek, publicKey } = await provision(dataDir);
  const first = generateUnlockKey();
  const second = generateUnlockKey();

  assert.deepEqual(await rewrapKeys(dataDir, { to: first }), { dekFile: true, nodeKey: true });
  assert.equal(await isDekFileWrapped(paths.dekFile), true);
  assert.equal(await isNodeKeyEncrypted(paths.nodeKeyFile), true);
  await assert.rejects(readDekFile(paths.dekFile), (e: unknown) => isShoalError(e, "STORE_LOCKED"));
  await assert.rejects(readNodeKey(paths.nodeKeyFile), (e: unknown) => isShoalError(e, "STORE_LOCKED"));
  const kek1 = kekFromUnlockKey(first);
  assert.ok((await readDekFile(paths.dekFile, kek1)).current.equals(dek));
  assert.ok(signsFor(await readNodeKey(paths.nodeKeyFile, first), publicKey));

  await rewrapKeys(dataDir, { from: first, to: second });
  await assert.rejects(readDekFile(paths.dekFile, kek1), (e: unknown) => isShoalError(e, "UNLOCK_KEY_WRONG"));
  await assert.rejects(readNodeKey(paths.nodeKeyFile, first), (e: unknown) => isShoalError(e, "UNLOCK_KEY_WRONG"));
  const kek2 = kekFromUnlockKey(second);
  const keys = await readDekFile(paths.dekFile, kek2);
  assert.ok(keys.current.equals(dek));
  assert.ok(signsFor(await readNodeKey(paths.nodeKeyFile, second), publicKey));
  await assertDataIntact(paths.stateDir, keys);

  await rewrapKeys(dataDir, { from: second });
  assert.equal(await isDekFileWrapped(paths.dekFile), false);
  assert.equal(await isNodeKeyEncrypted(paths.nodeKeyFile), false);
  assert.ok((await readDekFile(paths.dekFile)).current.equals(dek));
  assert.ok(signsFor(await readNodeKey(paths.nodeKeyFile), publicKey));
});

test("a wrong 'from' key changes nothing; a re-run after a half-done rewrap completes it", async (t) => {
  const dataDir = tempDir(t, "rewrap");
  const { paths, dek, publicKey } = await provision(dataDir);
  const first = generateUnlockKey();
  const second = generateUnlockKey();
  await rewrapKeys(dataDir, { to: first });
  const before = readFileSync(paths.dekFile);
  await assert.rejects(rewrapKeys(dataDir, { from: generateUnlockKey(), to: second }), (e: unknown) => isShoalError(e, "UNLOCK_KEY_WRONG"));
  assert.deepEqual(readFileSync(paths.dekFile), before);
  await assert.rejects(rewrapKeys(dataDir, { from: "SWMKEY-1-x", to: second }), (e: unknown) => isShoalError(e, "UNLOCK_KEY_MALFORMED"));

  // Simulate a crash after the DEK file was re-wrapped but before the node key was.
  const kek1 = kekFromUnlockKey(first);
  const kek2 = kekFromUnlockKey(second);
  await writeDekFile(paths.dekFile, await readDekFile(paths.dekFile, kek1), kek2);
  await rewrapKeys(dataDir, { from: first, to: second });
  assert.ok((await readDekFile(paths.dekFile, kek2)).current.equals(dek));
  assert.ok(signsFor(await readNodeKey(paths.nodeKeyFile, second), publicKey));
});

test("rotateStoreDek rewrites every value under a new DEK and records it; the old DEK opens nothing", async (t) => {
  const dataDir = tempDir(t, "rotate");
  const { paths, dek } = await provision(dataDir);
  const unlockKey = generateUnlockKey();
  // The autolock-on sequence: wrap first, then rotate under the KEK.
  await rewrapKeys(dataDir, { to: unlockKey });
  const kek = kekFromUnlockKey(unlockKey);
  const oldBytes = dek.exportBytes();
  const store = await EncryptedStore.open(paths.stateDir, await readDekFile(paths.dekFile, kek));
  const { rewrittenValues } = await rotateStoreDek(store, paths.dekFile, kek);
  assert.equal(rewrittenValues, 300);
  const newKeys = store.dataKeys();
  assert.equal(newKeys.pending, undefined);
  await store.put(b("obj/after"), b("x"));
  await store.del(b("obj/after"));
  await store.close();

  const onDisk = await readDekFile(paths.dekFile, kek);
  assert.equal(onDisk.pending, undefined);
  assert.ok(onDisk.current.equals(newKeys.current));
  assert.equal(onDisk.current.equals(DataKey.fromBytes(oldBytes)), false);
  await assertDataIntact(paths.stateDir, onDisk);
  const old = await EncryptedStore.open(paths.stateDir, { current: DataKey.fromBytes(oldBytes) });
  await assert.rejects(old.get(b("obj/1")), (e: unknown) => isShoalError(e, "STORE_CORRUPT"));
  await old.close();
});

test("a DEK rotation interrupted after the pending key was recorded is finished on restart", async (t) => {
  const dataDir = tempDir(t, "rotate");
  const { paths, dek } = await provision(dataDir);
  // Crash point: the file holds {current, pending} and some writes already used the pending key.
  const pending = DataKey.generate();
  await writeDekFile(paths.dekFile, { current: dek, pending });
  let store = await EncryptedStore.open(paths.stateDir, { current: dek, pending });
  await store.put(b("obj/300"), b("payload 300"));
  await store.del(b("obj/300"));
  await store.close();

  const keys = await readDekFile(paths.dekFile);
  assert.ok(keys.pending?.equals(pending));
  store = await EncryptedStore.open(paths.stateDir, keys);
  await rotateStoreDek(store, paths.dekFile);
  await store.close();
  const after = await readDekFile(paths.dekFile);
  assert.ok(after.current.equals(pending));
  assert.equal(after.pending, undefined);
  await assertDataIntact(paths.stateDir, after);
});
