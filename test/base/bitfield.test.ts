import assert from "node:assert/strict";
import { test } from "node:test";
import { bitfieldBytes, checkPeerBitfield, clearBit, countBits, hasBit, isComplete, newBitfield, setBit } from "../../src/base/bitfield.js";
import { isShoalError } from "../../src/base/errors.js";
import { SeededRandom } from "../../src/base/random.js";

test("bits are in BitTorrent order: piece 0 is the high bit of byte 0, piece 9 is 0x40 of byte 1", () => {
  const bf = newBitfield(12);
  assert.equal(bf.length, 2);
  setBit(bf, 0);
  setBit(bf, 9);
  assert.deepEqual([...bf], [0x80, 0x40]);
  setBit(bf, 7);
  assert.deepEqual([...bf], [0x81, 0x40]);
  assert.ok(hasBit(bf, 0) && hasBit(bf, 7) && hasBit(bf, 9));
  assert.ok(!hasBit(bf, 1) && !hasBit(bf, 8) && !hasBit(bf, 11));
  clearBit(bf, 0);
  assert.deepEqual([...bf], [0x01, 0x40]);
});

test("sizes: 0 pieces is 0 bytes, 8 is 1, 9 is 2, 256 (1 GiB of 4 MiB pieces) is 32", () => {
  assert.deepEqual([0, 1, 8, 9, 256].map(bitfieldBytes), [0, 1, 1, 2, 32]);
  assert.throws(() => newBitfield(-1), RangeError);
  assert.throws(() => newBitfield(1.5), RangeError);
});

test("an index outside the bitfield is refused for reads and writes alike", () => {
  const bf = newBitfield(9); // 2 bytes: bits 0..15 addressable
  for (const bad of [-1, 16, 1.5, Number.NaN]) {
    assert.throws(() => hasBit(bf, bad), RangeError);
    assert.throws(() => setBit(bf, bad), RangeError);
    assert.throws(() => clearBit(bf, bad), RangeError);
  }
  assert.deepEqual([...bf], [0, 0]);
});

test("countBits and isComplete agree with a set of indices over random fills", () => {
  const random = new SeededRandom(3);
  for (let round = 0; round < 50; round++) {
    const n = random.int(1, 300);
    const bf = newBitfield(n);
    const held = new Set<number>();
    for (let k = 0; k < random.int(0, n + 1); k++) {
      const i = random.int(0, n);
      setBit(bf, i);
      held.add(i);
    }
    assert.equal(countBits(bf), held.size);
    for (let i = 0; i < n; i++) assert.equal(hasBit(bf, i), held.has(i));
    for (let i = 0; i < n; i++) setBit(bf, i);
    assert.ok(isComplete(bf, n));
    clearBit(bf, n - 1);
    assert.ok(!isComplete(bf, n));
  }
});

test("a peer's bitfield must have the right length and no spare bits set", () => {
  assert.doesNotThrow(() => checkPeerBitfield(new Uint8Array([0xff, 0xe0]), 11));
  const wrong = [new Uint8Array([0xff]), new Uint8Array([0xff, 0xe0, 0]), new Uint8Array([0xff, 0xf0])];
  for (const bf of wrong) {
    assert.throws(() => checkPeerBitfield(bf, 11), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
  }
});
