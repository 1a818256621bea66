// Join latency with real daemons (default raft timing): `shoal join` of a worker until it returns,
// and until the node is READY in `node ls`; a manager join until it is a raft voter.
// Run: node --import tsx scripts/bench/cluster-join.ts [--workers 3]
import { ProcessCluster, waitFor } from "../../test/e2e/cluster.js";

const workers = Number(process.argv[process.argv.indexOf("--workers") + 1] || 3) || 3;
const cluster = new ProcessCluster([]);
const joinMs: number[] = [];
const readyMs: number[] = [];
let managerVoterMs = 0;
try {
  const names = ["m1", "m2", ...Array.from({ length: workers }, (_, i) => `w${i + 1}`)];
  const nodes = await Promise.all(names.map((n) => cluster.add(n)));
  const m1 = nodes[0]!;
  const { workerToken, managerToken } = await cluster.init("m1");
  for (let i = 0; i < workers; i++) {
    const name = `w${i + 1}`;
    const started = Date.now();
    await cluster.join(name, workerToken, m1.addr);
    joinMs.push(Date.now() - started);
    const id = (await cluster.node(name).info()).nodeId;
    await waitFor(`${name} ready`, async () => (await m1.client.getNode(id)).status?.state === 2 || undefined, 30_000, 20);
    readyMs.push(Date.now() - started);
  }
  const started = Date.now();
  await cluster.join("m2", managerToken, m1.addr);
  const id = (await cluster.node("m2").info()).nodeId;
  await waitFor("m2 voter", async () => (await m1.client.getNode(id)).managerStatus?.voter === true || undefined, 30_000, 20);
  managerVoterMs = Date.now() - started;
} finally {
  await cluster.close();
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  JSON.stringify({ bench: "cluster-join", workers, workerJoinMs: joinMs, workerReadyMs: readyMs, medianJoinMs: median(joinMs), medianReadyMs: median(readyMs), managerJoinToVoterMs: managerVoterMs }) + "\n",
);
