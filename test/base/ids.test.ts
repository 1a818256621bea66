import assert from "node:assert/strict";
import { test } from "node:test";
import { bytesToBase36, ID_LENGTH, isValidId, newId } from "../../src/base/ids.js";

test("newId gives valid, distinct 25-character IDs across many refills of its random pool", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    const id = newId();
    assert.equal(id.length, ID_LENGTH);
    assert.ok(isValidId(id), id);
    seen.add(id);
  }
  assert.equal(seen.size, 20_000);
});

test("newId uses the whole 128-bit range: leading digits vary and decode below 2^128", () => {
  const firsts = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const id = newId();
    firsts.add(id[0]!);
    let value = 0n;
    for (const ch of id) value = value * 36n + BigInt(parseInt(ch, 36));
    assert.ok(value < 1n << 128n);
  }
  // 2^128 in base 36 starts with "f", so the first digit spans 0..f: with 2,000 IDs all 16 appear.
  assert.equal(firsts.size, 16);
});

test("bytesToBase36 pads and refuses values wider than asked", () => {
  assert.equal(bytesToBase36(new Uint8Array([0, 35]), 4), "000z");
  assert.throws(() => bytesToBase36(new Uint8Array(16).fill(255), 24), RangeError);
});
