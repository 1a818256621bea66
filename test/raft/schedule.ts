// Random schedules for the property tests: ticks, deliveries in any order, losses, duplicates,
// partitions, crashes and restarts, proposals, compactions on three in-memory nodes.
// (Property tests: random schedules (ticks, deliveries in any order, losses, duplicates,
// partitions, crashes and restarts, proposals, compactions) on three in-memory nodes never produce
// two leaders in a term, never diverge committed prefixes, and keep every log invariant.)
import fc from "fast-check";
import { isShoalError } from "../../src/base/errors.js";
import { Cluster, seededRandomFor } from "./env.js";

export type Action =
  | { kind: "tick"; node: number; count: number }
  | { kind: "ready"; node: number }
  | { kind: "deliver"; node: number; picks: number[]; duplicate: boolean }
  | { kind: "drop"; node: number; pick: number }
  | { kind: "propose"; node: number; tag: number }
  | { kind: "isolate"; node: number }
  | { kind: "heal" }
  | { kind: "restart"; node: number }
  | { kind: "compact"; node: number };

const node = fc.integer({ min: 1, max: 3 });
export const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("tick" as const), node, count: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("ready" as const), node }) },
  { weight: 14, arbitrary: fc.record({ kind: fc.constant("deliver" as const), node, picks: fc.array(fc.nat(20), { minLength: 1, maxLength: 6 }), duplicate: fc.integer({ min: 0, max: 5 }).map((n) => n === 0) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("drop" as const), node, pick: fc.nat(20) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("propose" as const), node, tag: fc.nat(1000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("isolate" as const), node }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("heal" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart" as const), node }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("compact" as const), node }) },
);

export function runSchedule(seed: number, preVote: boolean, checkQuorum: boolean, actions: Action[]): Cluster {
  const c = new Cluster({
    voters: [1n, 2n, 3n],
    preVote,
    checkQuorum,
    electionTicks: 8,
    heartbeatTicks: 1,
    maxSizePerMsgBytes: 64,
    maxInflightMsgs: 4,
    maxUncommittedEntriesBytes: 1 << 20,
    random: seededRandomFor(seed),
  });
  for (const id of [1n, 2n, 3n]) c.addNode(id);
  let seq = 0;
  for (const a of actions) {
    switch (a.kind) {
      case "tick":
        for (let i = 0; i < a.count; i++) c.node(BigInt(a.node)).core.tick();
        break;
      case "ready":
        c.processReady(BigInt(a.node), undefined);
        break;
      case "deliver": {
        // Messages in any order; isolation drops happen at send time in the env.
        const to = BigInt(a.node);
        for (const pick of a.picks) c.deliverOne(to, pick, a.duplicate);
        break;
      }
      case "drop": {
        const inbox = c.inboxes.get(BigInt(a.node))!;
        if (inbox.length > 0) inbox.splice(a.pick % inbox.length, 1);
        break;
      }
      case "propose":
        try {
          c.node(BigInt(a.node)).core.propose(new TextEncoder().encode(`v${a.tag}.${seq++}`));
        } catch (err) {
          if (!isShoalError(err, "NOT_LEADER") && !isShoalError(err, "PROPOSAL_DROPPED")) throw err;
        }
        break;
      case "isolate":
        c.isolate(BigInt(a.node));
        break;
      case "heal":
        c.heal();
        break;
      case "restart":
        // Only between Readies: the env persists each Ready whole, as a synced driver would.
        c.restart(BigInt(a.node));
        break;
      case "compact": {
        const n = c.node(BigInt(a.node));
        if (n.appliedIndex > (n.storage.snapshot?.index ?? 0)) c.compact(n.id, n.appliedIndex);
        break;
      }
    }
    // Drivers handle Readies promptly; a "ready" action only adds extra interleavings.
    if (a.kind !== "ready") for (const id of c.ids()) c.processReady(id, undefined);
    for (const n of c.nodes.values()) n.core.checkInvariants();
  }
  // Liveness sanity: heal, let time pass, and the cluster must settle with one leader that commits.
  c.heal();
  for (let round = 0; round < 300; round++) {
    for (const n of c.nodes.values()) n.core.tick();
    c.stabilize(undefined);
  }
  return c;
}

