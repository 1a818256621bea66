// Failover time on a 3-manager cluster of real daemons with the default raft timing (100 ms tick,
// election timeout 1–2 s): SIGKILL the leader, measure until a write that started after the kill
// is acknowledged. Run: node --import tsx scripts/bench/cluster-failover.ts [--rounds 5]
import { ProcessCluster, waitFor, type NodeProcess } from "../../test/e2e/cluster.js";

const rounds = Number(process.argv[process.argv.indexOf("--rounds") + 1] || 5) || 5;
const cluster = new ProcessCluster([]);
const results: number[] = [];
try {
  const managers = await Promise.all(["m1", "m2", "m3"].map((n) => cluster.add(n)));
  const { managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, managers[0]!.addr);
  await cluster.join("m3", managerToken, managers[0]!.addr);
  await waitFor("3 voters", async () => (await managers[0]!.client.listNodes()).filter((n) => n.managerStatus?.voter).length === 3 || undefined, 30_000);
  for (let round = 0; round < rounds; round++) {
    const leader = await cluster.leader();
    const others = managers.filter((m) => m !== leader) as NodeProcess[];
    const killedAt = Date.now();
    await leader.stop("SIGKILL");
    let i = 0;
    await waitFor("a write after the kill", async () => {
      const via = others[i++ % others.length]!;
      try {
        await via.putValue(`failover-${round}-${i}`, Buffer.from("x"), 1000);
        return true;
      } catch {
        return undefined;
      }
    }, 30_000, 5);
    results.push(Date.now() - killedAt);
    await leader.start();
    await waitFor("the old leader to rejoin", async () => (await leader.info()).leaderNodeId !== "" || undefined, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
  }
} finally {
  await cluster.close();
}
const sorted = [...results].sort((a, b) => a - b);
process.stdout.write(
  JSON.stringify({ bench: "cluster-failover", raftTiming: "default (100 ms tick, election 10-20 ticks)", rounds, failoverMs: results, p50Ms: sorted[Math.floor(sorted.length / 2)], maxMs: sorted[sorted.length - 1] }) + "\n",
);
