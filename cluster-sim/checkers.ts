// The per-step safety checkers: each is called by the driver at the moment the property can
// first break, and throws a SimViolation naming the nodes, indexes and terms involved.
import { MessageType, NO_NODE, Role, type Entry, type Message, type RaftId, type SnapshotMetadata } from "../src/raft/core/types.js";
import { lastIndexOf, snapshotIndexOf, termAt, type SimDisk } from "./disk.js";
import { SimViolation } from "./violation.js";

/** What the checkers read of a simulated node. */
export interface CheckedNode {
  readonly index: number;
  readonly term: number;
  readonly role: Role;
  readonly disk: SimDisk;
  /** Undefined while the node is down. */
  readonly raft: unknown;
}

export function entryFingerprint(e: Entry): string {
  return `${e.type}:${Buffer.from(e.data).toString("base64")}`;
}

export class SafetyCheckers {
  private readonly leaderOfTerm = new Map<number, number>();
  /** (index, term) → the entry's bytes and its predecessor's term, across all nodes and all time. */
  private readonly entryRegistry = new Map<string, { fingerprint: string; prevTerm: number | undefined }>();
  /** index → what was applied there first; every later apply anywhere must match. */
  private readonly appliedRegistry = new Map<number, { term: number; fingerprint: string }>();
  /** index → the earliest term in which a leader counted it committed, and the entry's term. */
  private readonly commitRegistry = new Map<number, { commitTerm: number; entryTerm: number }>();

  constructor(
    /** Every node ever started, by index; the array may grow (membership churn). */
    private readonly nodes: readonly CheckedNode[],
    private readonly nameOf: (id: RaftId) => string,
    /** Check the current-term commit rule itself, not only its consequences. */
    private readonly checkCommitRule: boolean,
  ) {}

  /** Distinct terms that had a leader. */
  get elections(): number {
    return this.leaderOfTerm.size;
  }

  /**
   * State machine safety: every node applies the same entry at an index. Returns true when this
   * is the first apply of `e.index` anywhere.
   */
  applied(node: CheckedNode, e: Entry): boolean {
    const fingerprint = entryFingerprint(e);
    const known = this.appliedRegistry.get(e.index);
    if (known === undefined) {
      this.appliedRegistry.set(e.index, { term: e.term, fingerprint });
      return true;
    }
    if (known.term !== e.term || known.fingerprint !== fingerprint) {
      throw new SimViolation(
        "state-machine-safety",
        `n${node.index} applied index ${e.index} term ${e.term}, another node applied term ${known.term} there${known.term === e.term ? " with different data" : ""}`,
      );
    }
    return false;
  }

  /** An installed snapshot must agree with what is known applied at its index. */
  snapshotInstalled(node: CheckedNode, meta: SnapshotMetadata): void {
    const known = this.appliedRegistry.get(meta.index);
    if (known !== undefined && known.term !== meta.term) {
      throw new SimViolation(
        "state-machine-safety",
        `n${node.index} installed a snapshot at ${meta.index} of term ${meta.term}, but term ${known.term} was applied there`,
      );
    }
  }

  electionSafety(node: CheckedNode): void {
    const existing = this.leaderOfTerm.get(node.term);
    if (existing !== undefined && existing !== node.index) {
      throw new SimViolation("election-safety", `n${existing} and n${node.index} were both leader in term ${node.term}`);
    }
    this.leaderOfTerm.set(node.term, node.index);
  }

  /**
   * Log matching, checked across all nodes and all time: an (index, term) pair names one entry
   * with one predecessor term, and terms never decrease along a log.
   */
  logMatching(node: CheckedNode, entries: Entry[]): void {
    const image = node.disk.current;
    let prevTerm = termAt(image, entries[0]!.index - 1);
    if (entries[0]!.index - 1 > lastIndexOf(image)) prevTerm = undefined;
    for (const e of entries) {
      if (prevTerm !== undefined && e.term < prevTerm) {
        throw new SimViolation("log-matching", `n${node.index} stores entry ${e.index} of term ${e.term} after one of term ${prevTerm}`);
      }
      const key = `${e.index}/${e.term}`;
      const fingerprint = entryFingerprint(e);
      const known = this.entryRegistry.get(key);
      if (known === undefined) {
        this.entryRegistry.set(key, { fingerprint, prevTerm });
      } else {
        if (known.fingerprint !== fingerprint) {
          throw new SimViolation("log-matching", `two different entries exist at index ${e.index} term ${e.term} (n${node.index} stores one)`);
        }
        if (known.prevTerm !== undefined && prevTerm !== undefined && known.prevTerm !== prevTerm) {
          throw new SimViolation(
            "log-matching",
            `entry ${e.index}/${e.term} follows term ${prevTerm} on n${node.index} but term ${known.prevTerm} elsewhere`,
          );
        }
        if (known.prevTerm === undefined && prevTerm !== undefined) known.prevTerm = prevTerm;
      }
      prevTerm = e.term;
    }
  }

  /** A new leader must hold every entry committed in an earlier term. */
  leaderCompletenessOnElection(node: CheckedNode): void {
    const image = node.disk.current;
    const snapIndex = snapshotIndexOf(image);
    for (const [index, c] of this.commitRegistry) {
      if (c.commitTerm >= node.term || index <= snapIndex) continue;
      const t = termAt(image, index);
      if (t !== c.entryTerm) {
        throw new SimViolation(
          "leader-completeness",
          `n${node.index} became leader of term ${node.term} without entry ${index}/${c.entryTerm} committed in term ${c.commitTerm} (it has ${t === undefined ? "nothing" : `term ${t}`} there)`,
        );
      }
    }
  }

  /** Records what a leader counts as committed; leaders of later terms must already hold it. */
  leaderCommitted(node: CheckedNode, fromExclusive: number, toInclusive: number): void {
    // Raft §5.4.2: a leader counts replicas only for an entry of its own term; older entries become
    // committed only underneath it. So a leader's commit index always lands on its own term.
    const landedOn = termAt(node.disk.current, toInclusive);
    if (this.checkCommitRule && toInclusive > fromExclusive && landedOn !== node.term) {
      throw new SimViolation(
        "commit-rule",
        `leader n${node.index} of term ${node.term} moved its commit index to ${toInclusive}, an entry of term ${landedOn}`,
      );
    }
    for (let index = fromExclusive + 1; index <= toInclusive; index++) {
      const entryTerm = termAt(node.disk.current, index);
      if (entryTerm === undefined) {
        throw new SimViolation("ready-contract", `leader n${node.index} committed index ${index} that it does not store`);
      }
      const known = this.commitRegistry.get(index);
      if (known !== undefined) {
        if (known.entryTerm !== entryTerm) {
          throw new SimViolation(
            "state-machine-safety",
            `index ${index} was committed with term ${known.entryTerm} in term ${known.commitTerm} and with term ${entryTerm} by n${node.index} in term ${node.term}`,
          );
        }
        continue;
      }
      this.commitRegistry.set(index, { commitTerm: node.term, entryTerm });
      for (const other of this.nodes) {
        if (other === node || other.raft === undefined || other.role !== Role.Leader || other.term <= node.term) continue;
        const image = other.disk.current;
        if (index <= snapshotIndexOf(image)) continue;
        const t = termAt(image, index);
        if (t !== entryTerm) {
          throw new SimViolation(
            "leader-completeness",
            `n${node.index} committed ${index}/${entryTerm} in term ${node.term} but n${other.index}, leader of term ${other.term}, lacks it`,
          );
        }
      }
    }
  }

  /** A vote or an acknowledgement may leave a node only after the state it promises is durable. */
  durableBeforeSend(node: CheckedNode, m: Message): void {
    const durable = node.disk.durable;
    // Raft persists currentTerm before answering in it: a crash must not let the node forget a term
    // it already spoke in. Pre-votes are the exception: they speak of a term nobody entered yet.
    if (m.type !== MessageType.PreVote && m.type !== MessageType.PreVoteResponse && m.term > durable.hardState.term) {
      throw new SimViolation(
        "unsynced-term",
        `n${node.index} sent ${MessageType[m.type]} in term ${m.term} to ${this.nameOf(m.to)} but its durable hard state is of term ${durable.hardState.term}`,
      );
    }
    if (m.reject) return;
    if (m.type === MessageType.VoteResponse) {
      const hs = durable.hardState;
      // A later durable term is as good: the node can never vote in the earlier term again (one
      // batch of inbound messages can hold a vote request of each term).
      if (hs.term < m.term || (hs.term === m.term && hs.vote !== m.to)) {
        throw new SimViolation(
          "unsynced-vote",
          `n${node.index} granted its term-${m.term} vote to ${this.nameOf(m.to)} but its durable hard state is term ${hs.term} vote ${hs.vote === NO_NODE ? "none" : this.nameOf(hs.vote)}`,
        );
      }
    } else if (m.type === MessageType.AppendResponse) {
      if (m.index <= snapshotIndexOf(durable)) return;
      const durableTerm = termAt(durable, m.index);
      const currentTerm = termAt(node.disk.current, m.index);
      if (durableTerm === undefined || durableTerm !== currentTerm) {
        throw new SimViolation(
          "unsynced-ack",
          `n${node.index} acknowledged index ${m.index} in term ${m.term} but its durable log ${durableTerm === undefined ? "ends before it" : `has term ${durableTerm} there, not ${currentTerm}`}`,
        );
      }
    }
  }
}
