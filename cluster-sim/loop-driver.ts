// Driving the leader loops on a manual clock (the workload simulation and the loops' tests): let
// every pass, proposal and resolver promise run out, and move time from timer to timer.
import type { ManualClock } from "../src/base/clock.js";
import type { LeaderLoops } from "../src/manager/leadership/leader-loops.js";

/** Until the loops are idle: their passes run on microtasks, resolvers and proposals on later turns. */
export async function settleLoops(loops: LeaderLoops): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await loops.idle();
    await new Promise((resolve) => setImmediate(resolve));
  }
  await loops.idle();
}

/** Moves the clock `ms` ahead, stopping at every timer that falls due so the loops act on it. */
export async function advanceLoops(clock: ManualClock, loops: LeaderLoops, ms: number): Promise<void> {
  const target = clock.nowMs() + ms;
  for (;;) {
    const next = clock.nextDueMs();
    if (next === undefined || next > target) break;
    clock.advanceTo(Math.max(next, clock.nowMs()));
    await settleLoops(loops);
  }
  clock.advanceTo(target);
  await settleLoops(loops);
}
