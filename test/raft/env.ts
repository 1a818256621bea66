// An in-memory cluster of RaftCore nodes for the raft tests: it plays the driver (persist, send,
// apply, advance) and formats what happens as text for the golden interaction scripts.
import { SeededRandom, type Random } from "../../src/base/random.js";
import {
  ConfChangeType,
  EntryType,
  MessageType,
  NO_NODE,
  RaftCore,
  decodeConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type PlantedFaults,
  type RaftConfig,
  type RaftId,
  type Ready,
  type SnapshotMetadata,
} from "../../src/raft/core/index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Always the low end of a range: election timeouts are exactly electionTicks in scripts. */
export const lowRandom: Random = { float: () => 0, int: (min) => min };

export interface Storage {
  hardState: HardState;
  snapshot?: SnapshotMetadata;
  snapshotData?: Uint8Array;
  entries: Entry[];
}

export interface SimNode {
  id: RaftId;
  core: RaftCore;
  config: RaftConfig;
  storage: Storage;
  initialConfState: ConfState;
  /** The state machine: data of every applied non-empty Normal entry, in order. */
  applied: string[];
  /** Index and term of every applied entry, for cross-node prefix checks. */
  appliedLog: { index: number; term: number; data: string }[];
  appliedIndex: number;
}

export interface NodeOptions {
  voters: RaftId[];
  learners: RaftId[];
  /** Start from a snapshot at this index (term 1) holding the given conf state. */
  snapshotIndex?: number;
  preVote: boolean;
  checkQuorum: boolean;
  electionTicks: number;
  heartbeatTicks: number;
  maxSizePerMsgBytes: number;
  maxInflightMsgs: number;
  maxUncommittedEntriesBytes: number;
  faults?: PlantedFaults;
  random?: (id: RaftId) => Random;
}

export const defaultOptions: NodeOptions = {
  voters: [],
  learners: [],
  preVote: false,
  checkQuorum: false,
  electionTicks: 10,
  heartbeatTicks: 1,
  maxSizePerMsgBytes: 1 << 20,
  maxInflightMsgs: 256,
  maxUncommittedEntriesBytes: 1 << 30,
};

// ---- formatting -----------------------------------------------------------------------------------

export function fmtId(id: RaftId): string {
  return id === NO_NODE ? "none" : id.toString();
}

function fmtData(data: Uint8Array): string {
  return JSON.stringify(dec.decode(data));
}

export function fmtEntry(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    const cc = decodeConfChange(e.data);
    return `${e.index}@t${e.term} conf:${ConfChangeType[cc.type]}(${fmtId(cc.nodeId)})`;
  }
  return `${e.index}@t${e.term} ${fmtData(e.data)}`;
}

export function fmtConf(c: ConfState): string {
  const parts = [`voters=(${c.voters.map(fmtId).join(",")})`, `learners=(${c.learners.map(fmtId).join(",")})`];
  if (c.removed !== undefined && c.removed.length > 0) parts.push(`removed=(${c.removed.map(fmtId).join(",")})`);
  return parts.join(" ");
}

export function fmtMessage(m: Message): string {
  const head = `${fmtId(m.from)}->${fmtId(m.to)} ${MessageType[m.type]} term=${m.term}`;
  const ctx = m.context.length > 0 ? ` ctx=${fmtData(m.context)}` : "";
  switch (m.type) {
    case MessageType.Append:
      return `${head} prev=${m.index}@t${m.logTerm} commit=${m.commit} entries=[${m.entries.map(fmtEntry).join(", ")}]`;
    case MessageType.AppendResponse:
      return m.reject ? `${head} reject index=${m.index} hint=${m.rejectHint}@t${m.logTerm}` : `${head} index=${m.index}`;
    case MessageType.Vote:
    case MessageType.PreVote:
      return `${head} last=${m.index}@t${m.logTerm}${m.context.length > 0 ? " transfer" : ""}`;
    case MessageType.VoteResponse:
    case MessageType.PreVoteResponse:
      return `${head} ${m.reject ? "rejected" : "granted"}`;
    case MessageType.Heartbeat:
      return `${head} commit=${m.commit}${ctx}`;
    case MessageType.HeartbeatResponse:
      return `${head}${ctx}`;
    case MessageType.Snapshot: {
      const md = m.snapshot!.metadata;
      return `${head} snapshot=${md.index}@t${md.term} ${fmtConf(md.confState)}`;
    }
    case MessageType.ReadIndex:
    case MessageType.ReadIndexResponse:
      return `${head} index=${m.index}${ctx}`;
    case MessageType.TransferLeader:
      return `${head}${ctx.length > 0 ? " transferee" : ""}`;
    default:
      return head;
  }
}

// ---- the cluster ----------------------------------------------------------------------------------

export class Cluster {
  readonly nodes = new Map<RaftId, SimNode>();
  /** Messages sent and not yet delivered, per recipient, in send order (drops happen at send). */
  readonly inboxes = new Map<RaftId, Message[]>();
  /** Directed links that lose every message: "1->2". */
  readonly dropped = new Set<string>();
  /** Extra loss rule evaluated at send time (tests). */
  lose: ((m: Message) => boolean) | undefined;
  readonly options: NodeOptions;
  /** The highest committed entry seen per index across all nodes (safety check). */
  readonly committedByIndex = new Map<number, { term: number; data: string }>();
  /** Leader per term seen so far (safety check). */
  readonly leaderByTerm = new Map<number, RaftId>();

  constructor(options: Partial<NodeOptions> = {}) {
    this.options = { ...defaultOptions, ...options };
  }

  addNode(id: RaftId, opts: Partial<NodeOptions> = {}): SimNode {
    const o = { ...this.options, ...opts };
    const initialConfState: ConfState = { voters: o.voters, learners: o.learners };
    const storage: Storage = { hardState: { term: 0, vote: NO_NODE, commit: 0 }, entries: [] };
    const applied: string[] = [];
    if (o.snapshotIndex !== undefined && o.snapshotIndex > 0) {
      storage.snapshot = { index: o.snapshotIndex, term: 1, confState: initialConfState };
      storage.snapshotData = enc.encode(JSON.stringify(applied));
      storage.hardState = { term: 1, vote: NO_NODE, commit: o.snapshotIndex };
    }
    const config: RaftConfig = {
      id,
      electionTicks: o.electionTicks,
      heartbeatTicks: o.heartbeatTicks,
      random: o.random?.(id) ?? lowRandom,
      preVote: o.preVote,
      checkQuorum: o.checkQuorum,
      maxSizePerMsgBytes: o.maxSizePerMsgBytes,
      maxInflightMsgs: o.maxInflightMsgs,
      maxUncommittedEntriesBytes: o.maxUncommittedEntriesBytes,
      ...(o.faults !== undefined ? { faults: o.faults } : {}),
    };
    const node: SimNode = {
      id,
      config,
      storage,
      initialConfState,
      applied,
      appliedLog: [],
      appliedIndex: storage.snapshot?.index ?? 0,
      core: undefined as unknown as RaftCore,
    };
    node.core = this.boot(node);
    this.nodes.set(id, node);
    this.inboxes.set(id, []);
    return node;
  }

  private boot(node: SimNode): RaftCore {
    const s = node.storage;
    return new RaftCore(node.config, {
      hardState: { ...s.hardState },
      ...(s.snapshot !== undefined ? { snapshot: s.snapshot } : {}),
      ...(s.snapshotData !== undefined ? { snapshotData: s.snapshotData } : {}),
      entries: s.entries.slice(),
      initialConfState: node.initialConfState,
    });
  }

  /** Crash and restart from storage: volatile state (and undelivered messages to it) are lost. */
  restart(id: RaftId): void {
    const node = this.node(id);
    node.applied = node.storage.snapshotData !== undefined ? (JSON.parse(dec.decode(node.storage.snapshotData)) as string[]) : [];
    node.appliedLog = [];
    node.appliedIndex = node.storage.snapshot?.index ?? 0;
    node.core = this.boot(node);
    this.inboxes.set(id, []);
  }

  node(id: RaftId): SimNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  ids(): RaftId[] {
    return [...this.nodes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  isolate(id: RaftId): void {
    for (const other of this.ids()) {
      if (other === id) continue;
      this.dropped.add(`${id}->${other}`);
      this.dropped.add(`${other}->${id}`);
    }
  }

  heal(): void {
    this.dropped.clear();
  }

  /** Snapshot the state machine at the applied index `index` and compact core and storage. */
  compact(id: RaftId, index: number): void {
    const node = this.node(id);
    if (index !== node.appliedIndex) throw new Error(`env compacts only at the applied index ${node.appliedIndex}`);
    const data = enc.encode(JSON.stringify(node.applied));
    node.core.compact(index, data);
    const meta = node.core.snapshotMetadata();
    const s = node.storage;
    const base = s.snapshot?.index ?? 0;
    s.entries = s.entries.slice(Math.max(0, meta.index - base));
    s.snapshot = meta;
    s.snapshotData = data;
  }

  /** Persist, send, apply, advance one Ready of node `id`. Returns description lines. */
  processReady(id: RaftId, out: string[] | undefined): boolean {
    const node = this.node(id);
    const core = node.core;
    if (!core.hasReady()) return false;
    const rd = core.ready();
    // Never apply an entry that was not durable before this Ready (the core's contract).
    const storedLast = (node.storage.snapshot?.index ?? 0) + node.storage.entries.length;
    const lastCommitted = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastCommitted !== undefined && lastCommitted.index > storedLast) {
      throw new Error(`node ${id}: Ready asks to apply ${lastCommitted.index} but only ${storedLast} is durable`);
    }
    const isDropped = (m: Message): boolean => this.dropped.has(`${m.from}->${m.to}`) || this.lose?.(m) === true;
    if (out !== undefined) describeReady(id, rd, out, isDropped);
    this.persist(node, rd);
    for (const m of rd.messages) {
      const inbox = this.inboxes.get(m.to);
      if (inbox !== undefined && !isDropped(m)) inbox.push(m);
    }
    if (rd.snapshot !== undefined) {
      node.applied = JSON.parse(dec.decode(rd.snapshot.data)) as string[];
      node.appliedIndex = rd.snapshot.metadata.index;
    }
    for (const e of rd.committedEntries) this.apply(node, e, out);
    core.advance();
    if (rd.softState?.role === "leader") {
      const term = core.status().hardState.term;
      const prev = this.leaderByTerm.get(term);
      if (prev !== undefined && prev !== id) throw new Error(`two leaders in term ${term}: ${prev} and ${id}`);
      this.leaderByTerm.set(term, id);
    }
    return true;
  }

  private persist(node: SimNode, rd: Ready): void {
    const s = node.storage;
    if (rd.snapshot !== undefined) {
      s.snapshot = rd.snapshot.metadata;
      s.snapshotData = rd.snapshot.data;
      s.entries = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      const base = s.snapshot?.index ?? 0;
      s.entries.length = Math.max(0, Math.min(s.entries.length, first - base - 1));
      if (first !== base + s.entries.length + 1) throw new Error(`node ${node.id}: Ready entries start at ${first}, storage ends at ${base + s.entries.length}`);
      for (const e of rd.entries) s.entries.push(e);
    }
    if (rd.hardState !== undefined) {
      if (rd.hardState.commit < s.hardState.commit) throw new Error(`node ${node.id}: commit went back from ${s.hardState.commit} to ${rd.hardState.commit}`);
      s.hardState = { ...rd.hardState };
    }
  }

  private apply(node: SimNode, e: Entry, out: string[] | undefined): void {
    if (e.index !== node.appliedIndex + 1) throw new Error(`node ${node.id}: applying ${e.index} after ${node.appliedIndex}`);
    node.appliedIndex = e.index;
    const data = e.type === EntryType.ConfChange ? `conf:${e.index}` : dec.decode(e.data);
    node.appliedLog.push({ index: e.index, term: e.term, data });
    const seen = this.committedByIndex.get(e.index);
    if (seen !== undefined && (seen.term !== e.term || seen.data !== data)) {
      throw new Error(`node ${node.id} applied ${e.index}@t${e.term} ${data} but another node applied ${e.index}@t${seen.term} ${seen.data}`);
    }
    this.committedByIndex.set(e.index, { term: e.term, data });
    if (e.type === EntryType.ConfChange) {
      const cs = node.core.applyConfChange(decodeConfChange(e.data));
      out?.push(`  ${fmtId(node.id)} applied conf change ${e.index}: ${fmtConf(cs)}`);
    } else if (e.data.length > 0) {
      node.applied.push(data);
    }
  }

  /** Deliver every queued message to `id` (or to all). Returns description lines. */
  deliver(id: RaftId, out: string[] | undefined): number {
    const inbox = this.inboxes.get(id) ?? [];
    this.inboxes.set(id, []);
    let n = 0;
    for (const m of inbox) {
      const node = this.nodes.get(m.to);
      if (node === undefined) continue;
      out?.push(fmtMessage(m));
      try {
        node.core.step(m);
      } catch (err) {
        out?.push(`  error: ${(err as Error).message}`);
      }
      n++;
    }
    return n;
  }

  /** Deliver the message at position `pick` (mod length) of `to`'s inbox; optionally keep a copy queued. */
  deliverOne(to: RaftId, pick: number, duplicate: boolean): boolean {
    const inbox = this.inboxes.get(to) ?? [];
    if (inbox.length === 0) return false;
    const at = pick % inbox.length;
    const m = inbox[at]!;
    if (!duplicate) inbox.splice(at, 1);
    this.node(to).core.step(m);
    return true;
  }

  /** Process readies and deliver messages until nothing moves. */
  stabilize(out: string[] | undefined, only?: RaftId[]): void {
    const ids = only ?? this.ids();
    for (let round = 0; round < 10_000; round++) {
      let moved = false;
      for (const id of ids) {
        if (this.node(id).core.hasReady()) {
          out?.push(`> ${fmtId(id)} handling Ready`);
          this.processReady(id, out);
          moved = true;
        }
      }
      for (const id of ids) {
        const inbox = this.inboxes.get(id)!;
        if (inbox.length > 0) {
          out?.push(`> ${fmtId(id)} receiving messages`);
          const lines: string[] = [];
          this.deliver(id, out === undefined ? undefined : lines);
          for (const l of lines) out?.push(`  ${l}`);
          moved = true;
        }
      }
      if (!moved) return;
    }
    throw new Error("stabilize did not converge in 10000 rounds");
  }
}

export function describeReady(id: RaftId, rd: Ready, out: string[], isDropped: (m: Message) => boolean = () => false): void {
  const p = (s: string): void => {
    out.push(`  ${s}`);
  };
  p(`Ready mustSync=${rd.mustSync}`);
  if (rd.softState !== undefined) p(`soft: leader=${fmtId(rd.softState.leader)} role=${rd.softState.role}`);
  if (rd.hardState !== undefined) p(`hard: term=${rd.hardState.term} vote=${fmtId(rd.hardState.vote)} commit=${rd.hardState.commit}`);
  if (rd.snapshot !== undefined) p(`snapshot: ${rd.snapshot.metadata.index}@t${rd.snapshot.metadata.term} ${fmtConf(rd.snapshot.metadata.confState)}`);
  if (rd.entries.length > 0) p(`entries: ${rd.entries.map(fmtEntry).join(", ")}`);
  if (rd.committedEntries.length > 0) p(`committed: ${rd.committedEntries.map(fmtEntry).join(", ")}`);
  for (const m of rd.messages) p(`${isDropped(m) ? "dropped" : "send"}: ${fmtMessage(m)}`);
  for (const r of rd.readStates) p(`readState: index=${r.index} ctx=${fmtData(r.context)}`);
  void id;
}

export function seededRandomFor(seed: number): (id: RaftId) => Random {
  return (id) => new SeededRandom(seed * 1000 + Number(id));
}
