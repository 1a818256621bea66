// What may leave a RaftNode before its Ready is on disk: a leader's appends go out while its own
// fsync runs (so followers persist in parallel), yet a write still resolves only after a majority
// persisted it; a Ready that changes term or vote (a campaign) sends nothing until it is durable.
// Three RaftNodes over the loopback network, each on encrypted LevelDB, with one node's saves held.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, RaftLogStorage } from "../../src/storage/index.js";
import { LoopbackNetwork, RaftNode, type DurableRaftLog } from "../../src/raft/node/index.js";
import type { RaftId } from "../../src/raft/core/types.js";
import { FAST, ListMachine, utf8, waitFor } from "./harness.js";

/** A real raft log whose saves can be held at a gate, recording every entry written. */
class GatedLog implements DurableRaftLog {
  readonly savedData: string[] = [];
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  heldSaves = 0;
  constructor(private readonly inner: RaftLogStorage) {}
  hold(): void {
    this.gate = new Promise((r) => (this.openGate = r));
  }
  release(): void {
    this.openGate?.();
    this.gate = undefined;
  }
  load(): ReturnType<DurableRaftLog["load"]> {
    return this.inner.load();
  }
  async save(update: Parameters<DurableRaftLog["save"]>[0]): Promise<void> {
    if (this.gate !== undefined) {
      this.heldSaves++;
      await this.gate;
    }
    await this.inner.save(update);
    for (const e of update.entries) this.savedData.push(Buffer.from(e.data).toString("utf8"));
  }
  compact(snapshot: Parameters<DurableRaftLog["compact"]>[0]): Promise<void> {
    return this.inner.compact(snapshot);
  }
}

interface Node {
  id: RaftId;
  node: RaftNode;
  log: GatedLog;
  store: EncryptedStore;
  key: DataKey;
}

async function startCluster(root: string): Promise<Node[]> {
  const network = new LoopbackNetwork();
  const ids: RaftId[] = [1n, 2n, 3n];
  const members = ids.map((id) => ({ raftId: id, nodeId: `node-${id}`, addr: `loopback:${id}` }));
  const nodes: Node[] = [];
  for (const id of ids) {
    const key = DataKey.generate();
    const store = await EncryptedStore.open(join(root, `n${id}`), { current: key });
    const log = new GatedLog(await RaftLogStorage.open(store));
    const node = await RaftNode.start({ ...FAST, id, log, transport: network.transportFor(id), stateMachine: new ListMachine(), bootstrap: { members } });
    network.attach(id, node);
    nodes.push({ id, node, log, store, key });
  }
  return nodes;
}

async function stopCluster(nodes: Node[], root: string): Promise<void> {
  for (const n of nodes) n.log.release();
  for (const n of nodes) await n.node.stop();
  for (const n of nodes) {
    await n.store.close();
    n.key.dispose();
  }
  rmSync(root, { recursive: true, force: true });
}

async function leaderOf(nodes: Node[]): Promise<Node> {
  return waitFor(() => {
    const leaders = nodes.filter((n) => n.node.isLeader);
    return leaders.length === 1 && nodes.every((n) => n.node.leaderId === leaders[0]!.id) ? leaders[0] : undefined;
  }, 10_000, "one agreed leader");
}

test("followers persist a leader's entry while the leader's own fsync is still running; the write resolves after", { timeout: 30_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "shoal-persist-order-"));
  const nodes = await startCluster(root);
  try {
    const leader = await leaderOf(nodes);
    await leader.node.propose(utf8("warm-up"));
    const followers = nodes.filter((n) => n !== leader);

    leader.log.hold();
    let resolved = false;
    const write = leader.node.propose(utf8("parallel")).then((r) => {
      resolved = true;
      return r;
    });
    await waitFor(() => leader.log.heldSaves > 0, 15_000, "the leader's save to start");
    await waitFor(() => followers.every((f) => f.log.savedData.includes("parallel")), 15_000, "both followers to persist the entry");
    // The leader has not written it and has not answered: it cannot see the acks before its own save.
    assert.equal(leader.log.savedData.includes("parallel"), false);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(resolved, false);

    leader.log.release();
    const result = (await write) as { value: string };
    assert.equal(result.value, "parallel");
    assert.equal(leader.log.savedData.includes("parallel"), true);
  } finally {
    await stopCluster(nodes, root);
  }
});

test("a campaign's term and vote are on disk before any vote request leaves", { timeout: 30_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "shoal-persist-order-"));
  const nodes = await startCluster(root);
  try {
    const leader = await leaderOf(nodes);
    await leader.node.propose(utf8("before"));
    const target = nodes.find((n) => n !== leader)!;
    const termBefore = leader.node.term;
    await waitFor(() => target.node.appliedIndex === leader.node.appliedIndex || undefined, 15_000, "the target to catch up");

    target.log.hold();
    const transfer = leader.node.transferLeadership(target.id, { timeoutMs: 10_000 });
    await waitFor(() => target.log.heldSaves > 0 && target.node.term > termBefore, 15_000, "the target to campaign and start saving its new term");
    // While the target's new term is not durable, nobody may have heard of it.
    await new Promise((r) => setTimeout(r, 100));
    for (const n of nodes) if (n !== target) assert.equal(n.node.term, termBefore, `node ${n.id} saw the new term before it was persisted`);

    target.log.release();
    await transfer;
    await waitFor(() => target.node.isLeader || undefined, 15_000, "the target to lead");
    assert.ok(target.node.term > termBefore);
  } finally {
    await stopCluster(nodes, root);
  }
});
