// retryWhileElecting: a one-shot call (shoal join) that meets an election is retried with backoff
// until it succeeds or the budget runs out; any other error ends it at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { ShoalError } from "../../src/base/errors.js";
import { retryWhileElecting } from "../../src/transport/leader.js";
import { toGrpcError } from "../../src/transport/errors.js";

/** Runs the retry loop to completion on a manual clock, firing each backoff timer as it is set. */
async function drive<T>(clock: ManualClock, run: Promise<T>): Promise<T> {
  let settled = false;
  run.then(() => (settled = true), () => (settled = true));
  while (!settled) {
    await new Promise((r) => setImmediate(r));
    const due = clock.nextDueMs();
    if (due !== undefined) clock.advanceTo(due);
  }
  return run;
}

test("NOT_LEADER and NO_QUORUM (also as gRPC errors) are retried until the call succeeds", async () => {
  const clock = new ManualClock(0);
  const failures = [new ShoalError("NOT_LEADER", "electing"), toGrpcError(new ShoalError("NO_QUORUM", "no quorum")), new ShoalError("NOT_LEADER", "electing")];
  const delays: number[] = [];
  let calls = 0;
  const value = await drive(
    clock,
    retryWhileElecting({ clock, budgetMs: 15_000, onRetry: (_e, d) => delays.push(d) }, async () => {
      calls++;
      const err = failures.shift();
      if (err !== undefined) throw err;
      return "joined";
    }),
  );
  assert.equal(value, "joined");
  assert.equal(calls, 4);
  assert.deepEqual(delays, [250, 500, 1000]);
});

test("another error is thrown at once, without a retry", async () => {
  const clock = new ManualClock(0);
  let calls = 0;
  await assert.rejects(
    drive(clock, retryWhileElecting({ clock, budgetMs: 15_000 }, async () => {
      calls++;
      throw new ShoalError("TOKEN_MALFORMED", "bad token");
    })),
    (err: unknown) => err instanceof ShoalError && err.code === "TOKEN_MALFORMED",
  );
  assert.equal(calls, 1);
});

test("an election that outlasts the budget ends with its last error", async () => {
  const clock = new ManualClock(0);
  let calls = 0;
  await assert.rejects(
    drive(clock, retryWhileElecting({ clock, budgetMs: 5_000 }, async () => {
      calls++;
      throw new ShoalError("NO_QUORUM", `attempt ${calls}`);
    })),
    (err: unknown) => err instanceof ShoalError && err.code === "NO_QUORUM",
  );
  // 250 + 500 + 1000 + 2000 = 3750 ms of waits fit in 5 s; the next 2 s wait would not.
  assert.equal(calls, 5);
  assert.ok(clock.nowMs() <= 5_000);
});
