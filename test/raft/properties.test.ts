// Property tests: random schedules (ticks, deliveries in any order, losses, duplicates,
// partitions, crashes and restarts, proposals, compactions) on three in-memory nodes never produce
// two leaders in a term, never diverge committed prefixes, and keep every log invariant.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { action, runSchedule } from "./schedule.js";

test("random schedules: one leader per term, committed prefixes agree, invariants hold", () => {
  fc.assert(
    fc.property(fc.nat(1_000_000), fc.boolean(), fc.boolean(), fc.array(action, { minLength: 200, maxLength: 800, size: "max" }), (seed, preVote, checkQuorum, actions) => {
      const c = runSchedule(seed, preVote, checkQuorum, actions);
      const leaders = [...c.nodes.values()].filter((n) => n.core.status().softState.role === "leader");
      assert.equal(leaders.length, 1, "after healing and stabilizing, exactly one leader");
      const leader = leaders[0]!;
      const pos = leader.core.propose(new TextEncoder().encode("final"));
      c.stabilize(undefined);
      for (const n of c.nodes.values()) {
        assert.ok(n.core.status().hardState.commit >= pos.index, `node ${n.id} committed the final proposal`);
        assert.equal(n.applied[n.applied.length - 1], "final");
      }
      // All three applied the same sequence (the env also checks entry by entry as they apply).
      const images = [...c.nodes.values()].map((n) => n.applied.join(","));
      assert.equal(new Set(images).size, 1, "state machines agree");
    }),
    { numRuns: 300, seed: 424242 },
  );
});
