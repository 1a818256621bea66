// A propose for an in-memory ObjectStore that applies each transaction at once, at the next index:
// what the leader loops see from raft, without raft (tests, cluster-sim, the scheduler benchmark).
import type { Clock } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";
import type { LoopProposal, ObjectStore, StoreTransaction } from "../../state/index.js";
import type { TermFencedPropose } from "./leader-loops.js";

export interface AppliedAtOnce {
  propose: TermFencedPropose;
  /** The term proposals must carry; set it to simulate a leader change. */
  term: number;
  /** Proposals applied so far. */
  proposals: number;
}

export function applyAtOnce(store: ObjectStore, clock: Clock, term = 1): AppliedAtOnce {
  const state: AppliedAtOnce = {
    term,
    proposals: 0,
    propose: async (build: (tx: StoreTransaction) => void, options: { term: number }): Promise<LoopProposal> => {
      if (options.term !== state.term) {
        throw new ShoalError("NOT_LEADER", `term ${options.term} is over (the current term is ${state.term}); nothing was written`);
      }
      const bytes = store.prepare(build, { now: new Date(clock.nowMs()) });
      const result = store.apply(bytes, { index: store.lastAppliedIndex + 1 });
      if (!result.ok) throw result.error;
      state.proposals++;
      return { index: result.index };
    },
  };
  return state;
}
