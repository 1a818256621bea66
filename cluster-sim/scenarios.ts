// Scripted adversaries for the simulator: exact fault sequences that random schedules reach too
// rarely. Each returns fresh steps (they keep state in closures) for a run with `scenario` set.
import { MessageType, type Message } from "../src/raft/core/types.js";
import type { ScenarioControl, ScenarioStep } from "./simulation.js";

/** A step condition that holds once `ms` of virtual time has passed since it was first polled. */
export function waitMs(ms: number): (c: ScenarioControl) => boolean {
  let startMs: number | undefined;
  return (c) => {
    startMs ??= c.nowMs;
    return c.nowMs - startMs >= ms;
  };
}

/**
 * Figure 8 of the Raft paper on five nodes. A leader of term t1 gets entry (i, t1) onto one other
 * node only; a leader of term t2 writes (i, t2) locally and dies; a leader of term t3 holding
 * (i, t1) copies it to a majority while its own no-op never leaves it. A correct leader must not
 * count (i, t1) as committed; the node holding (i, t2) then wins term t4 and overwrites it, which
 * is legal only if (i, t1) was never committed.
 */
export function figure8Scenario(): ScenarioStep[] {
  const all = [0, 1, 2, 3, 4];
  let a = -1;
  let b = -1;
  let rest: number[] = [];
  let t1 = 0;
  let i = 0;
  let l2 = -1;
  let l3 = -1;
  let others: number[] = [];
  // Entries of any term after t1 never leave their leader: the adversary strips them from appends
  // (as if each had been sent in its own message and lost), leaving the older entries to pass.
  const stripNewerThanT1 = (_from: number, _to: number, m: Message): Message =>
    m.type === MessageType.Append ? { ...m, entries: m.entries.filter((e) => e.term <= t1) } : m;
  return [
    {
      name: "a leader is elected and every node has its log",
      until: (c) => {
        const l = c.leader();
        if (l === undefined) return false;
        const last = c.lastIndex(l);
        return c.commit(l) === last && all.every((n) => c.lastIndex(n) === last && c.commit(n) === last);
      },
      then: (c) => {
        a = c.leader()!;
        b = (a + 1) % 5;
        rest = all.filter((n) => n !== a && n !== b);
        t1 = c.term(a);
        c.partition([[a, b], rest]);
        const index = c.propose(a, "x", "from-t1");
        if (index === undefined) throw new Error("figure 8: the first leader refused a proposal");
        i = index;
      },
    },
    {
      name: "(i, t1) reaches B only; A dies, B is cut off",
      until: (c) => c.termAt(b, i) === t1,
      then: (c) => {
        c.crash(a);
        c.partition([[b], rest]);
        c.intercept(stripNewerThanT1);
      },
    },
    {
      name: "a leader of term t2 among the rest writes (i, t2) locally, then dies",
      until: (c) => {
        const l = c.leader(rest);
        return l !== undefined && c.termAt(l, i) === c.term(l);
      },
      then: (c) => {
        l2 = c.leader(rest)!;
        others = rest.filter((n) => n !== l2);
        c.crash(l2);
        c.restart(a);
        c.heal();
      },
    },
    {
      name: "a leader of term t3 holding (i, t1) copies it to the two remaining nodes",
      until: (c) => {
        const l = c.leader([a, b]);
        return l !== undefined && c.term(l) > c.term(l2) && others.every((n) => c.termAt(n, i) === t1);
      },
      then: (c) => {
        l3 = c.leader([a, b])!;
      },
    },
    {
      name: "heartbeats spread the leader's commit index (500 ms)",
      until: waitMs(500),
      then: (c) => {
        // Both holders of (i, t1) die; the holder of (i, t2) comes back and can win.
        c.crash(a);
        c.crash(b);
        c.intercept(undefined);
        c.restart(l2);
      },
    },
    {
      name: "the holder of (i, t2) becomes leader of a later term",
      until: (c) => c.leader() === l2 && c.term(l2) > c.term(l3),
    },
    {
      name: "the new leader overwrites index i on the others (wait until it has)",
      until: (c) => others.every((n) => c.termAt(n, i) !== t1),
    },
  ];
}
