// Throughput of the pure Raft core: 3 voters in memory, messages delivered in-process, proposals of
// 256 B in batches. Prints one JSON object: proposals committed (applied on every node) per second.
// Usage: node --import tsx scripts/bench/raft-core.ts [--proposals N] [--batch N]
import { SeededRandom } from "../../src/base/random.js";
import { RaftCore, type Message, type RaftId } from "../../src/raft/core/index.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const totalProposals = arg("proposals", 400_000);
const batchSize = arg("batch", 256);
const payloadBytes = 256;
const ids: RaftId[] = [1n, 2n, 3n];

const nodes = new Map<RaftId, RaftCore>();
for (const id of ids) {
  nodes.set(
    id,
    new RaftCore(
      {
        id,
        electionTicks: 10,
        heartbeatTicks: 1,
        random: new SeededRandom(Number(id)),
        preVote: true,
        checkQuorum: true,
        maxSizePerMsgBytes: 1 << 20,
        maxInflightMsgs: 256,
        maxUncommittedEntriesBytes: 1 << 30,
      },
      { hardState: { term: 0, vote: 0n, commit: 0 }, entries: [], initialConfState: { voters: ids, learners: [] } },
    ),
  );
}

const applied = new Map<RaftId, number>(ids.map((id) => [id, 0]));
let queue: Message[] = [];
let stored = 0; // a stand-in for persistence: count entries "written"

function pump(): void {
  for (;;) {
    let moved = false;
    for (const [id, core] of nodes) {
      if (!core.hasReady()) continue;
      moved = true;
      const rd = core.ready();
      stored += rd.entries.length;
      for (const m of rd.messages) queue.push(m);
      applied.set(id, applied.get(id)! + rd.committedEntries.length);
      core.advance();
    }
    if (queue.length > 0) {
      moved = true;
      const batch = queue;
      queue = [];
      for (const m of batch) nodes.get(m.to)!.step(m);
    }
    if (!moved) return;
  }
}

nodes.get(1n)!.campaign();
pump();
const leader = nodes.get(1n)!;
if (leader.status().softState.role !== "leader") throw new Error("node 1 did not become leader");

const payloads = Array.from({ length: 64 }, (_, i) => new Uint8Array(payloadBytes).fill(i));
const baseApplied = Math.min(...applied.values());
const memBefore = process.memoryUsage().heapUsed;
const startNs = process.hrtime.bigint();
let proposed = 0;
let lastIndex = 0;
while (proposed < totalProposals) {
  for (let i = 0; i < batchSize && proposed < totalProposals; i++, proposed++) {
    lastIndex = leader.propose(payloads[proposed & 63]!).index;
  }
  pump();
  // Compact now and then, as a driver would, so the in-memory log stays bounded.
  if ((proposed / batchSize) % 64 === 0) {
    for (const core of nodes.values()) {
      const st = core.status();
      if (st.applied > st.firstIndex + 10_000) core.compact(st.applied - 1_000, new Uint8Array(0));
    }
  }
}
pump();
const elapsedS = Number(process.hrtime.bigint() - startNs) / 1e9;
const committedEverywhere = Math.min(...applied.values()) - baseApplied;
if (leader.status().hardState.commit < lastIndex) throw new Error("not everything committed");

console.log(
  JSON.stringify({
    benchmark: "raft-core",
    voters: ids.length,
    payloadBytes,
    batchSize,
    proposals: totalProposals,
    committedOnAllNodes: committedEverywhere,
    elapsedS: Number(elapsedS.toFixed(3)),
    proposalsCommittedPerS: Math.round(totalProposals / elapsedS),
    targetPerS: 200_000,
    entriesPersisted: stored,
    heapGrowthMB: Number(((process.memoryUsage().heapUsed - memBefore) / 1e6).toFixed(1)),
  }),
);
