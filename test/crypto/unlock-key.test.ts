// Unlock keys: format, parsing and errors that never echo the input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { generateUnlockKey, parseUnlockKey, kekFromUnlockKey, UNLOCK_KEY_PREFIX } from "../../src/crypto/index.js";
import { isShoalError } from "../../src/base/errors.js";

test("generated keys have the SWMKEY-1 format and parse back to 32 bytes", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const text = generateUnlockKey();
    assert.match(text, /^SWMKEY-1-[A-Za-z0-9+/]{43}$/);
    const bytes = parseUnlockKey(text);
    assert.equal(bytes.length, 32);
    assert.equal(UNLOCK_KEY_PREFIX + bytes.toString("base64").replace(/=+$/, ""), text);
    seen.add(text);
  }
  assert.equal(seen.size, 50);
});

test("surrounding whitespace (a newline from stdin) is ignored", () => {
  const text = generateUnlockKey();
  assert.deepEqual(parseUnlockKey(`  ${text}\n`), parseUnlockKey(text));
});

test("kekFromUnlockKey gives the same key for the same text", () => {
  const text = generateUnlockKey();
  const a = kekFromUnlockKey(text);
  const b = kekFromUnlockKey(text);
  assert.equal(a.equals(b), true);
  assert.deepEqual(a.exportBytes(), parseUnlockKey(text));
  a.dispose();
  b.dispose();
});

test("malformed keys give UNLOCK_KEY_MALFORMED naming the problem, never the input", () => {
  const good = generateUnlockKey();
  const body = good.slice(UNLOCK_KEY_PREFIX.length);
  const cases: Array<[string, RegExp]> = [
    ["", /empty/],
    ["   \n", /empty/],
    ["SWMTKN-1-" + body, /does not start with SWMKEY-1-/],
    ["swmkey-1-" + body, /does not start with SWMKEY-1-/],
    ["SWMKEY-2-" + body, /version is not supported/],
    [body, /does not start with SWMKEY-1-/],
    ["SWMKEY-1-" + body.slice(0, 42), /has 42 characters, expected 43/],
    ["SWMKEY-1-" + body + "AAAA", /has 47 characters, expected 43/],
    ["SWMKEY-1-" + body + "=", /has 44 characters/],
    ["SWMKEY-1-" + "x".repeat(4096), /has 4096 characters/],
    ["SWMKEY-1-" + "*" + body.slice(1), /not valid unpadded base64/],
    ["SWMKEY-1-" + "-" + body.slice(1), /not valid unpadded base64/],
    // 43 chars carry 258 bits: the last character's low two bits must be zero.
    ["SWMKEY-1-" + body.slice(0, 42) + "B", /not valid unpadded base64/],
  ];
  for (const [input, why] of cases) {
    assert.throws(
      () => parseUnlockKey(input),
      (err: unknown) => {
        assert.ok(isShoalError(err, "UNLOCK_KEY_MALFORMED"), `${why}: wrong error ${String(err)}`);
        assert.match(err.message, why);
        if (input.trim().length > 12) {
          assert.equal(err.message.includes(input.trim()), false, "the message echoes the key");
          assert.equal(err.message.includes(body.slice(0, 12)), false, "the message echoes the key");
        }
        return true;
      },
    );
  }
});
