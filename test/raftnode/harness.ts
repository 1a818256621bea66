// Test harness: RaftNodes over the loopback network, each with its own encrypted LevelDB in a temp
// dir, and a small replicated log as the state machine. Used by test/raftnode/*.test.ts and the bench.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ShoalError } from "../../src/base/errors.js";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore } from "../../src/storage/index.js";
import { LoopbackNetwork, RaftNode, type AppliedEntry, type RaftMemberInfo, type RaftNodeOptions, type RaftStateMachine } from "../../src/raft/node/index.js";
import type { RaftId } from "../../src/raft/core/types.js";
import { waitFor as pollUntil } from "../../scripts/lib/wait.js";

/** A replicated list of strings; `apply` returns the entry's position so proposers can check it. */
export class ListMachine implements RaftStateMachine {
  items: string[] = [];
  lastIndex = 0;
  restores = 0;
  apply(entry: AppliedEntry): { index: number; count: number; value: string } {
    const value = Buffer.from(entry.data).toString("utf8");
    if (entry.index <= this.lastIndex) throw new ShoalError("RAFT_INVARIANT", `entry ${entry.index} applied twice`);
    this.items.push(value);
    this.lastIndex = entry.index;
    return { index: entry.index, count: this.items.length, value };
  }
  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify({ items: this.items, lastIndex: this.lastIndex }));
  }
  restore(data: Uint8Array): void {
    const parsed = JSON.parse(Buffer.from(data).toString("utf8")) as { items: string[]; lastIndex: number };
    this.items = parsed.items;
    this.lastIndex = parsed.lastIndex;
    this.restores++;
  }
}

export interface Member {
  id: RaftId;
  dir: string;
  key: DataKey;
  store?: EncryptedStore;
  node?: RaftNode;
  sm: ListMachine;
}

/**
 * Short but not fragile: elections in 300–600 ms, so a slow fsync on a shared CI disk (100+ ms
 * seen) does not look like a dead leader.
 */
export const FAST: Partial<RaftNodeOptions> = { tickMs: 20, electionTicks: 15, heartbeatTicks: 1 };

export class TestCluster {
  readonly network = new LoopbackNetwork();
  readonly members = new Map<RaftId, Member>();
  private readonly root = mkdtempSync(join(tmpdir(), "shoal-raftnode-"));

  constructor(readonly options: Partial<RaftNodeOptions> = {}) {}

  info(id: RaftId): RaftMemberInfo {
    return { raftId: id, nodeId: `node-${id}`, addr: `loopback:${id}` };
  }

  /** Starts `ids` as the founding voters of a new cluster. */
  async bootstrap(ids: RaftId[]): Promise<void> {
    const members = ids.map((id) => this.info(id));
    for (const id of ids) await this.start(id, { bootstrap: { members } });
  }

  /** Starts (or restarts from its data dir) one node. */
  async start(id: RaftId, extra: Partial<RaftNodeOptions> = {}): Promise<RaftNode> {
    let m = this.members.get(id);
    if (m === undefined) {
      m = { id, dir: join(this.root, `n${id}`), key: DataKey.generate(), sm: new ListMachine() };
      this.members.set(id, m);
    } else {
      m.sm = new ListMachine(); // a restart loses memory: the state must come back from disk
    }
    m.store = await EncryptedStore.open(m.dir, { current: m.key });
    m.node = await RaftNode.start({
      ...FAST,
      ...this.options,
      ...extra,
      id,
      dataStore: m.store,
      transport: this.network.transportFor(id),
      stateMachine: m.sm,
    });
    this.network.attach(id, m.node);
    return m.node;
  }

  /** Stops a node as a crash would look to the others: detached, then stopped, store closed. */
  async stop(id: RaftId): Promise<void> {
    const m = this.member(id);
    this.network.detach(id);
    await m.node?.stop();
    await m.store?.close();
    m.node = undefined;
    m.store = undefined;
  }

  member(id: RaftId): Member {
    const m = this.members.get(id);
    if (m === undefined) throw new Error(`no member ${id}`);
    return m;
  }

  node(id: RaftId): RaftNode {
    const n = this.member(id).node;
    if (n === undefined) throw new Error(`member ${id} is not running`);
    return n;
  }

  running(): RaftNode[] {
    return [...this.members.values()].flatMap((m) => (m.node ? [m.node] : []));
  }

  /** Waits until the running nodes agree on one leader among them; returns it. */
  async waitForLeader(timeoutMs = 15_000): Promise<RaftNode> {
    return waitFor(() => {
      const nodes = this.running();
      const leaders = nodes.filter((n) => n.isLeader);
      if (leaders.length !== 1) return undefined;
      const leader = leaders[0]!;
      return nodes.every((n) => n.leaderId === leader.id) ? leader : undefined;
    }, timeoutMs, "a single agreed leader");
  }

  async close(): Promise<void> {
    for (const id of this.members.keys()) if (this.members.get(id)?.node) await this.stop(id);
    for (const m of this.members.values()) m.key.dispose();
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The harness's one waitFor (scripts/lib/wait.ts), in this file's argument order, polling every 5 ms. */
export function waitFor<T>(probe: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  return pollUntil(what, probe, timeoutMs, 5);
}

export const utf8 = (s: string): Uint8Array => Buffer.from(s, "utf8");
