// DataKey: secure memory, stable IDs, disposal.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DataKey, KEY_BYTES, seal } from "../../src/crypto/index.js";
import { isShoalError } from "../../src/base/errors.js";

test("generate gives distinct keys in secure memory with distinct IDs", () => {
  const a = DataKey.generate();
  const b = DataKey.generate();
  assert.equal((a.secureBytes() as Buffer & { secure?: boolean }).secure, true);
  assert.equal(a.secureBytes().length, KEY_BYTES);
  assert.equal(a.equals(b), false);
  assert.notDeepEqual(a.id, b.id);
  assert.equal(a.id.length, 4);
  a.dispose();
  b.dispose();
});

test("fromBytes copies the bytes and derives the same ID for the same key", () => {
  const bytes = Buffer.alloc(KEY_BYTES, 9);
  const a = DataKey.fromBytes(bytes);
  bytes.fill(0);
  const b = DataKey.fromBytes(Buffer.alloc(KEY_BYTES, 9));
  assert.equal(a.equals(b), true);
  assert.deepEqual(a.id, b.id);
  assert.deepEqual(a.exportBytes(), Buffer.alloc(KEY_BYTES, 9));
  a.dispose();
  b.dispose();
});

test("fromBytes refuses the wrong length", () => {
  for (const len of [0, 16, 31, 33]) {
    assert.throws(() => DataKey.fromBytes(Buffer.alloc(len)), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
  }
});

test("dispose zeroes and releases the key; later use throws; dispose is idempotent", () => {
  const key = DataKey.generate();
  const material = key.secureBytes();
  key.dispose();
  key.dispose();
  assert.equal(key.disposed, true);
  // sodium_free detaches the backing memory: nothing of the key is reachable any more.
  assert.equal(material.length, 0);
  assert.throws(() => key.secureBytes(), (e: unknown) => isShoalError(e, "CRYPTO_FAILED"));
  assert.throws(() => seal(key, Buffer.from("x"), Buffer.alloc(0)), (e: unknown) => isShoalError(e, "CRYPTO_FAILED"));
  assert.throws(() => key.exportBytes(), (e: unknown) => isShoalError(e, "CRYPTO_FAILED"));
});
