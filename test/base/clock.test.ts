// The injected clock: a ManualClock fires timers in time order (ties in the order they were set),
// each with the clock at its due time; intervals repeat; cancel stops them; sleep resolves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";

test("ManualClock fires timers in due order with the clock at their due time", () => {
  const clock = new ManualClock(1000);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push(`b@${clock.nowMs()}`), 20);
  clock.setTimeout(() => fired.push(`a@${clock.nowMs()}`), 10);
  clock.setTimeout(() => fired.push(`c@${clock.nowMs()}`), 20);
  const cancelled = clock.setTimeout(() => fired.push("never"), 5);
  cancelled.cancel();
  clock.advance(15);
  assert.deepEqual(fired, ["a@1010"]);
  assert.equal(clock.nowMs(), 1015);
  clock.advance(100);
  assert.deepEqual(fired, ["a@1010", "b@1020", "c@1020"]);
  assert.equal(clock.pendingTimers, 0);
});

test("ManualClock intervals repeat until cancelled, and a timer set by a timer fires in the same advance", () => {
  const clock = new ManualClock();
  const ticks: number[] = [];
  const interval = clock.setInterval(() => {
    ticks.push(clock.nowMs());
    if (ticks.length === 2) clock.setTimeout(() => ticks.push(-clock.nowMs()), 5);
  }, 10);
  clock.advance(35);
  assert.deepEqual(ticks, [10, 20, -25, 30]);
  interval.cancel();
  clock.advance(100);
  assert.deepEqual(ticks, [10, 20, -25, 30]);
  assert.throws(() => clock.advance(-1), RangeError);
});

test("ManualClock.sleep resolves once time passes", async () => {
  const clock = new ManualClock();
  let done = false;
  const slept = clock.sleep(50).then(() => (done = true));
  clock.advance(49);
  await Promise.resolve();
  assert.equal(done, false);
  clock.advance(1);
  await slept;
  assert.equal(done, true);
  assert.equal(clock.nextDueMs(), undefined);
});
