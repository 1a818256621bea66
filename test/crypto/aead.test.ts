// Sealing: round trips, and every way a sealed value can be wrong fails with CRYPTO_FAILED.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DataKey, seal, open, SEAL_OVERHEAD_BYTES } from "../../src/crypto/index.js";
import { isShoalError } from "../../src/base/errors.js";

const ad = Buffer.from("state/key-1");

function assertCryptoFailed(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => isShoalError(err, "CRYPTO_FAILED"));
}

test("seal/open round trip for empty, small and large plaintexts", () => {
  const key = DataKey.generate();
  for (const size of [0, 1, 255, 64 * 1024]) {
    const plaintext = Buffer.alloc(size, 0x5a);
    const sealed = seal(key, plaintext, ad);
    assert.equal(sealed.length, size + SEAL_OVERHEAD_BYTES);
    assert.equal(sealed[0], 1);
    assert.deepEqual(open(key, sealed, ad), plaintext);
  }
  key.dispose();
});

test("two seals of the same plaintext differ (random nonce) and the ciphertext hides the plaintext", () => {
  const key = DataKey.generate();
  const plaintext = Buffer.from("attack at dawn, attack at dawn");
  const a = seal(key, plaintext, ad);
  const b = seal(key, plaintext, ad);
  assert.notDeepEqual(a.subarray(1, 25), b.subarray(1, 25));
  assert.notDeepEqual(a, b);
  assert.equal(a.includes(plaintext), false);
  key.dispose();
});

test("flipping any single byte (version, nonce, ciphertext, tag) fails to open", () => {
  const key = DataKey.generate();
  const sealed = seal(key, Buffer.from("0123456789abcdef"), ad);
  for (let i = 0; i < sealed.length; i++) {
    const tampered = Buffer.from(sealed);
    tampered[i] = tampered[i]! ^ 0x01;
    assertCryptoFailed(() => open(key, tampered, ad));
  }
  key.dispose();
});

test("wrong associated data, wrong key, truncation, extension and empty input fail", () => {
  const key = DataKey.generate();
  const other = DataKey.generate();
  const sealed = seal(key, Buffer.from("payload"), ad);
  assertCryptoFailed(() => open(key, sealed, Buffer.from("state/key-2")));
  assertCryptoFailed(() => open(key, sealed, Buffer.alloc(0)));
  assertCryptoFailed(() => open(other, sealed, ad));
  for (const len of [0, 1, 24, 25, SEAL_OVERHEAD_BYTES - 1, sealed.length - 1]) {
    assertCryptoFailed(() => open(key, sealed.subarray(0, len), ad));
  }
  assertCryptoFailed(() => open(key, Buffer.concat([sealed, Buffer.from([0])]), ad));
  assertCryptoFailed(() => open(key, Buffer.alloc(0), ad));
  const versionTwo = Buffer.from(sealed);
  versionTwo[0] = 2;
  assert.throws(() => open(key, versionTwo, ad), /unknown format version 2/);
  key.dispose();
  other.dispose();
});

test("an empty plaintext is still authenticated", () => {
  const key = DataKey.generate();
  const sealed = seal(key, Buffer.alloc(0), ad);
  assert.equal(open(key, sealed, ad).length, 0);
  assertCryptoFailed(() => open(key, sealed, Buffer.from("x")));
  key.dispose();
});

test("accepts Uint8Array views that are not Buffers", () => {
  const key = DataKey.generate();
  const backing = new Uint8Array(32).fill(7);
  const view = backing.subarray(8, 24);
  const sealed = seal(key, view, new Uint8Array([1, 2, 3]));
  assert.deepEqual(new Uint8Array(open(key, new Uint8Array(sealed), new Uint8Array([1, 2, 3]))), view);
  key.dispose();
});

test("nonces never repeat across many seals (pooled CSPRNG nonces are handed out once)", () => {
  const key = DataKey.generate();
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) seen.add(seal(key, Buffer.alloc(0), ad).subarray(1, 25).toString("hex"));
  assert.equal(seen.size, 5000);
  key.dispose();
});
