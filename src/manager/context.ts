// What the manager's services (CA server, control API, dispatcher, membership) share: the store, the
// raft node, the leader check with its redirect, and proposals that fail with the store's own error.
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import type { Random } from "../base/random.js";
import type { RootCA } from "../ca/index.js";
import type { RaftNode } from "../raft/node/index.js";
import type { ObjectStore, StoreTransaction } from "../state/index.js";
import type { StoreChange } from "../state/index.js";
import type { RevocationState } from "../transport/revocation.js";
import type { SecureServer } from "../transport/server.js";

export interface AppliedProposal {
  index: number;
  changes: StoreChange[];
}

export interface ManagerContext {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly dataDir: string;
  readonly store: ObjectStore;
  readonly raft: RaftNode;
  readonly server: SecureServer;
  readonly revocation: RevocationState;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** The root CA with its key, from the replicated cluster object (leader signs with it). */
  rootCA(): RootCA;
  /** Throws NOT_LEADER (with the leader's address) unless this manager is the raft leader. */
  requireLeader(): void;
  /** The leader's advertised address, if one is known. */
  leaderAddr(): string | undefined;
  /** Puts one transaction through raft; throws the store's refusal, or NOT_LEADER with a hint. */
  propose(build: (tx: StoreTransaction) => void, options?: { term?: number; timeoutMs?: number }): Promise<AppliedProposal>;
  /** Raft IDs of voters the leader heard from recently (only meaningful on the leader). */
  reachableVoters(): Set<bigint>;
  /** Called after every applied proposal and snapshot restore (subscribers: dispatcher, keys, revocation). */
  onApplied(listener: (changes: StoreChange[] | "reset") => void): () => void;
}
