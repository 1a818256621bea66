// The DEK file: plain and wrapped forms, wrong and missing KEK, damage, permissions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataKey, kekFromUnlockKey, generateUnlockKey } from "../../src/crypto/index.js";
import { readDekFile, writeDekFile, isDekFileWrapped } from "../../src/storage/index.js";
import { isShoalError } from "../../src/base/errors.js";
import { tempDir } from "./temp-dir.js";

test("plain DEK file round trip, with and without a pending key, mode 0600, no temp files left", async (t) => {
  const dir = tempDir(t, "dek");
  const path = join(dir, "keys", "dek");
  const current = DataKey.generate();
  const pending = DataKey.generate();
  await writeDekFile(path, { current });
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, "keys")).mode & 0o777, 0o700);
  assert.equal(await isDekFileWrapped(path), false);
  let read = await readDekFile(path);
  assert.ok(read.current.equals(current));
  assert.equal(read.pending, undefined);
  // The key bytes are in the plain file (that is what "plain" means), but in secure memory once read.
  assert.ok(readFileSync(path).includes(current.exportBytes()));
  assert.equal((read.current.secureBytes() as Buffer & { secure?: boolean }).secure, true);

  await writeDekFile(path, { current, pending });
  read = await readDekFile(path);
  assert.ok(read.current.equals(current));
  assert.ok(read.pending?.equals(pending));
  assert.deepEqual(readdirSync(join(dir, "keys")), ["dek"]);
  // A plain file opens whether or not a KEK is offered.
  const kek = kekFromUnlockKey(generateUnlockKey());
  assert.ok((await readDekFile(path, kek)).current.equals(current));
});

test("wrapped DEK file: right KEK opens it, no KEK → STORE_LOCKED, wrong KEK → UNLOCK_KEY_WRONG", async (t) => {
  const dir = tempDir(t, "dek");
  const path = join(dir, "dek");
  const current = DataKey.generate();
  const pending = DataKey.generate();
  const kek = kekFromUnlockKey(generateUnlockKey());
  const wrong = kekFromUnlockKey(generateUnlockKey());
  await writeDekFile(path, { current, pending }, kek);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(await isDekFileWrapped(path), true);
  const raw = readFileSync(path);
  assert.equal(raw.includes(current.exportBytes()), false);
  assert.equal(raw.includes(pending.exportBytes()), false);

  const read = await readDekFile(path, kek);
  assert.ok(read.current.equals(current));
  assert.ok(read.pending?.equals(pending));
  await assert.rejects(readDekFile(path), (err: unknown) => isShoalError(err, "STORE_LOCKED"));
  await assert.rejects(readDekFile(path, wrong), (err: unknown) => isShoalError(err, "UNLOCK_KEY_WRONG"));
});

test("plain ↔ wrapped conversions keep the same DEK", async (t) => {
  const dir = tempDir(t, "dek");
  const path = join(dir, "dek");
  const current = DataKey.generate();
  const kek = kekFromUnlockKey(generateUnlockKey());
  await writeDekFile(path, { current });
  const plain = await readDekFile(path);
  await writeDekFile(path, plain, kek);
  const wrapped = await readDekFile(path, kek);
  assert.ok(wrapped.current.equals(current));
  await writeDekFile(path, wrapped);
  assert.equal(await isDekFileWrapped(path), false);
  assert.ok((await readDekFile(path)).current.equals(current));
});

test("garbage, truncation and altered bytes give KEY_FILE_INVALID (or UNLOCK_KEY_WRONG for the KEK check)", async (t) => {
  const dir = tempDir(t, "dek");
  const plainPath = join(dir, "plain");
  const wrappedPath = join(dir, "wrapped");
  const kek = kekFromUnlockKey(generateUnlockKey());
  await writeDekFile(plainPath, { current: DataKey.generate() });
  await writeDekFile(wrappedPath, { current: DataKey.generate() }, kek);
  const plain = readFileSync(plainPath);
  const wrapped = readFileSync(wrappedPath);
  const target = join(dir, "bad");
  const invalid = (err: unknown): boolean => isShoalError(err, "KEY_FILE_INVALID");

  for (const bytes of [Buffer.alloc(0), Buffer.from("not a key file at all"), Buffer.from('{"dek":"abc"}'), plain.subarray(0, 9), plain.subarray(0, plain.length - 1)]) {
    writeFileSync(target, bytes);
    await assert.rejects(readDekFile(target, kek), invalid);
  }
  for (let i = 0; i < plain.length; i++) {
    const bad = Buffer.from(plain);
    bad[i] = bad[i]! ^ 0x04;
    writeFileSync(target, bad);
    await assert.rejects(readDekFile(target), invalid, `plain byte ${i}`);
  }
  // Bytes 10..25 of a wrapped file are the KEK check: altering them looks like a wrong key.
  for (let i = 0; i < wrapped.length; i++) {
    const bad = Buffer.from(wrapped);
    bad[i] = bad[i]! ^ 0x04;
    writeFileSync(target, bad);
    const expected = i >= 10 && i < 26 ? "UNLOCK_KEY_WRONG" : "KEY_FILE_INVALID";
    await assert.rejects(readDekFile(target, kek), (err: unknown) => isShoalError(err, expected), `wrapped byte ${i}`);
  }
  writeFileSync(target, wrapped.subarray(0, 30));
  await assert.rejects(readDekFile(target, kek), invalid);
  await assert.rejects(readDekFile(join(dir, "missing")), (err: unknown) => isShoalError(err, "NOT_FOUND"));
});

test("error messages never contain key material", async (t) => {
  const dir = tempDir(t, "dek");
  const path = join(dir, "dek");
  const unlockKey = generateUnlockKey();
  const kek = kekFromUnlockKey(unlockKey);
  await writeDekFile(path, { current: DataKey.generate() }, kek);
  for (const attempt of [undefined, kekFromUnlockKey(generateUnlockKey())]) {
    await assert.rejects(readDekFile(path, attempt), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.equal(err.message.includes(unlockKey), false);
      assert.equal(err.message.includes(unlockKey.slice(9, 20)), false);
      return true;
    });
  }
});
