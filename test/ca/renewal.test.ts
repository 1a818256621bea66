// pickRenewalTime: uniform in [50 %, 80 %] of the real (issuance-to-expiry) validity window.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom, type Random } from "../../src/base/random.js";
import { createRootCA, pickRenewalTime } from "../../src/ca/index.js";
import { issue, throwsCode } from "./fixtures.js";

const HOUR_MS = 3600_000;

test("with a seeded random, all picks lie in [50 %, 80 %] of the window and spread across it", async () => {
  const clock = new ManualClock(Date.UTC(2030, 0, 1));
  const root = await createRootCA({ clock });
  const cert = await issue(root, clock); // default 90 days, NotBefore backdated 1 h
  const issuedMs = clock.nowMs();
  const windowMs = cert.notAfter.getTime() - issuedMs;
  const random = new SeededRandom(1234);
  const buckets = new Array<number>(10).fill(0);
  const picks = 5000;
  for (let i = 0; i < picks; i++) {
    const at = pickRenewalTime({ notBefore: cert.notBefore, notAfter: cert.notAfter, random }).getTime();
    const fraction = (at - issuedMs) / windowMs;
    assert.ok(fraction >= 0.5 && fraction <= 0.8, `pick at ${fraction} of the window`);
    buckets[Math.min(9, Math.floor(((fraction - 0.5) / 0.3) * 10))]!++;
  }
  // Uniform: each tenth of the range gets about 500 picks.
  for (const count of buckets) assert.ok(count > 400 && count < 600, `bucket counts ${buckets.join(",")}`);
  // Same seed, same picks: the simulator can replay renewal.
  const again = (seed: number) => pickRenewalTime({ notBefore: cert.notBefore, notAfter: cert.notAfter, random: new SeededRandom(seed) }).getTime();
  assert.equal(again(7), again(7));
});

test("the window starts at issuance (NotBefore + 1 h), not at the backdated NotBefore", () => {
  const notBefore = new Date(Date.UTC(2030, 0, 1));
  const notAfter = new Date(notBefore.getTime() + HOUR_MS + 100 * HOUR_MS); // 100 h real validity
  const fixed = (value: number): Random => ({ float: () => value, int: (min) => min });
  assert.equal(pickRenewalTime({ notBefore, notAfter, random: fixed(0) }).getTime(), notBefore.getTime() + HOUR_MS + 50 * HOUR_MS);
  const latest = pickRenewalTime({ notBefore, notAfter, random: fixed(0.9999999) }).getTime();
  assert.ok(latest <= notBefore.getTime() + HOUR_MS + 80 * HOUR_MS);
  assert.ok(latest > notBefore.getTime() + HOUR_MS + 79.99 * HOUR_MS);
  // A window not longer than the backdate is used whole.
  const short = new Date(notBefore.getTime() + HOUR_MS);
  assert.equal(pickRenewalTime({ notBefore, notAfter: short, random: fixed(0) }).getTime(), notBefore.getTime() + HOUR_MS / 2);
  throwsCode(() => pickRenewalTime({ notBefore: notAfter, notAfter: notBefore, random: fixed(0) }), "INVALID_ARGUMENT");
  throwsCode(() => pickRenewalTime({ notBefore: new Date(Number.NaN), notAfter, random: fixed(0) }), "INVALID_ARGUMENT");
});
