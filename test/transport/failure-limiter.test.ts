// The failure limiter on a ManualClock: free failures are answered at once, later ones wait (250 ms
// doubling to 2 s); a right secret right after a burst of wrong ones succeeds within the 2 s cap and
// clears the record; waiting attempts are capped per key and in total (QUEUE_FULL); keys are
// separate, forgotten after a quiet minute, and bounded in number.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { ShoalError, isShoalError } from "../../src/base/errors.js";
import { FAILURE_LIMITER_DEFAULTS as D, FailureLimiter, sourceAddressOf } from "../../src/transport/failure-limiter.js";

const wrong = (): Promise<never> => Promise.reject(new ShoalError("TOKEN_INVALID", "wrong"));
const isWrong = (e: unknown): boolean => isShoalError(e, "TOKEN_INVALID");

/** Settles microtasks so awaited sleeps register on the clock. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test("free failures at once, then a doubling delay up to the cap", async () => {
  const clock = new ManualClock(0);
  const limiter = new FailureLimiter({ clock, what: "join attempts" });
  for (let i = 0; i < D.freeFailures; i++) {
    assert.equal(limiter.delayMs("a"), 0, `failure ${i + 1} is free`);
    await assert.rejects(limiter.run("a", wrong, isWrong));
  }
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    await assert.rejects(limiter.run("a", wrong, isWrong));
    delays.push(limiter.delayMs("a"));
    clock.advance(limiter.delayMs("a"));
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 2000, 2000]);
  assert.equal(limiter.delayMs("b"), 0, "another key is not slowed");
});

test("an attempt waits on the injected clock, and a right secret after a burst succeeds within the cap", async () => {
  const clock = new ManualClock(0);
  const limiter = new FailureLimiter({ clock, what: "join attempts" });
  // An attacker that retries the moment each attempt is evaluated.
  for (let i = 0; i < 20; i++) {
    const waitMs = limiter.delayMs("a");
    const p = limiter.run("a", wrong, isWrong).catch(() => undefined);
    await flush();
    clock.advance(waitMs);
    await p;
  }
  assert.equal(limiter.delayMs("a"), D.maxDelayMs, "the burst left the key at the cap");
  let done = false;
  const right = limiter.run("a", async () => "role", isWrong).then((v) => ((done = true), v));
  await flush();
  clock.advance(D.maxDelayMs - 1);
  await flush();
  assert.equal(done, false, "still waiting 1 ms before the cap");
  clock.advance(1);
  assert.equal(await right, "role", "the right secret succeeds at the cap");
  assert.equal(limiter.delayMs("a"), 0, "success clears the record");
  assert.equal(limiter.trackedKeys, 0);
});

test("errors that are not failures change nothing", async () => {
  const clock = new ManualClock(0);
  const limiter = new FailureLimiter({ clock, what: "join attempts", freeFailures: 0 });
  for (let i = 0; i < 10; i++) await assert.rejects(limiter.run("a", () => Promise.reject(new ShoalError("CSR_INVALID", "bad csr")), isWrong));
  assert.equal(limiter.delayMs("a"), 0);
});

test("waiting attempts are capped per key and in total", async () => {
  const clock = new ManualClock(0);
  const limiter = new FailureLimiter({ clock, what: "join attempts", freeFailures: 0, maxWaitingTotal: 6 });
  for (const key of ["a", "b"]) await assert.rejects(limiter.run(key, wrong, isWrong));
  const waiting = Array.from({ length: D.maxWaitingPerKey }, () => limiter.run("a", wrong, isWrong).catch((e: unknown) => e));
  await flush();
  await assert.rejects(limiter.run("a", wrong, isWrong), (e) => isShoalError(e, "QUEUE_FULL"), "over the per-key cap");
  const others = [limiter.run("b", wrong, isWrong).catch((e: unknown) => e), limiter.run("b", wrong, isWrong).catch((e: unknown) => e)];
  await flush();
  await assert.rejects(limiter.run("b", wrong, isWrong), (e) => isShoalError(e, "QUEUE_FULL"), "over the total cap");
  clock.advance(D.maxDelayMs);
  for (const e of await Promise.all([...waiting, ...others])) assert.ok(isWrong(e), "the waiting ones were evaluated");
});

test("failures are forgotten after a quiet period, and keys are bounded", async () => {
  const clock = new ManualClock(0);
  const limiter = new FailureLimiter({ clock, what: "join attempts", freeFailures: 0, maxKeys: 100 });
  await assert.rejects(limiter.run("a", wrong, isWrong));
  assert.ok(limiter.delayMs("a") > 0);
  clock.advance(D.forgetAfterMs + 1);
  assert.equal(limiter.delayMs("a"), 0);
  for (let i = 0; i < 5000; i++) await assert.rejects(limiter.run(`10.0.${i >> 8}.${i & 255}`, wrong, isWrong));
  assert.equal(limiter.trackedKeys, 100, "at most maxKeys sources are remembered");
  assert.ok(limiter.delayMs("10.0.19.135") > 0, "the most recent sources are kept");
});

test("the source address drops the port", () => {
  assert.equal(sourceAddressOf({ getPeer: () => "10.1.2.3:5000" }), "10.1.2.3");
  assert.equal(sourceAddressOf({ getPeer: () => "::1:5000" }), "::1");
  assert.equal(sourceAddressOf({ getPeer: () => "unix:/tmp/s" }), "unix:/tmp/s");
});
