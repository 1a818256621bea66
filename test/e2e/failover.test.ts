// Leader failure under load: a client writes continuously through every manager's socket while the
// leader is SIGKILLed several times; a new leader commits each time (the recovery time is reported,
// not asserted: the target, 2 s at p99, is measured by scripts/bench/cluster-failover.ts), and after
// every process restarts every acknowledged write is there. Then quorum loss is reported, not hung on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";

test("SIGKILL the leader under writes: a new leader commits and no acknowledged write is lost", { timeout: 150_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const managers = await Promise.all(["m1", "m2", "m3"].map((n) => cluster.add(n)));
  const [m1] = managers as [NodeProcess, NodeProcess, NodeProcess];
  const { managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1.addr);
  await cluster.join("m3", managerToken, m1.addr);
  await waitForVoters(m1, 3, { timeoutMs: 20_000 });

  const acknowledged = new Map<string, string>();
  let stop = false;
  // A failed step must not leave the writers running: the test process would never exit.
  t.after(() => {
    stop = true;
  });
  let seq = 0;
  /** Start time of the latest acknowledged write, and when it was acknowledged. */
  let lastAck = { startedMs: 0, ackMs: 0 };
  const clients = managers.map((m) => ({ m, client: m.newControlClient() }));
  const writer = async (slot: number): Promise<void> => {
    while (!stop) {
      const target = clients[(seq + slot) % clients.length]!;
      if (!target.m.running) {
        await new Promise((r) => setTimeout(r, 20));
        seq++;
        continue;
      }
      const key = `k${slot}-${seq++}`;
      const value = `v-${key}`;
      const startedMs = Date.now();
      try {
        await target.m.putValue(key, Buffer.from(value), 3000, target.client);
        acknowledged.set(key, value);
        if (startedMs > lastAck.startedMs) lastAck = { startedMs, ackMs: Date.now() };
      } catch {
        // Unacknowledged: may or may not be applied; never checked.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const writers = [writer(0), writer(1), writer(2)];

  const recoveryMs: number[] = [];
  for (let round = 0; round < 3; round++) {
    await new Promise((r) => setTimeout(r, 800));
    const leader = await cluster.leader();
    const before = acknowledged.size;
    const killedAt = Date.now();
    await leader.stop("SIGKILL");
    // Only a write that started after the kill proves a new leader: earlier ones may have committed before it.
    // Liveness guard only, far above the 2 s target.
    await waitFor("a write started after the kill to be acknowledged", () => (lastAck.startedMs > killedAt && acknowledged.size > before) || undefined, 15_000, 10);
    recoveryMs.push(lastAck.ackMs - killedAt);
    await leader.start();
    await waitFor("the restarted manager to rejoin", async () => (await leader.info()).leaderNodeId !== "" || undefined, 20_000);
  }
  stop = true;
  await Promise.all(writers);
  for (const c of clients) c.client.close();
  t.diagnostic(`recovery after SIGKILL of the leader: ${recoveryMs.join(", ")} ms; ${acknowledged.size} acknowledged writes`);
  assert.ok(acknowledged.size > 50, `only ${acknowledged.size} writes were acknowledged`);

  // Restart every process; every acknowledged write must be present.
  for (const m of managers) await m.stop("SIGKILL");
  for (const m of managers) await m.start();
  await cluster.leader();
  const reader = managers[1]!;
  const missing: string[] = [];
  for (const [key, value] of acknowledged) {
    const got = await waitFor(`key ${key}`, async () => (await reader.getValue(key)) ?? false, 10_000).catch(() => undefined);
    if (got?.toString() !== value) missing.push(key);
  }
  assert.deepEqual(missing, [], `${missing.length} acknowledged writes are missing`);

  // Quorum safety: with one of three managers down, demoting a live one would leave 1 of 2 reachable.
  const [a, b, c] = managers as [NodeProcess, NodeProcess, NodeProcess];
  const ids = await Promise.all(managers.map(async (m) => (await m.info()).nodeId));
  await c.stop("SIGKILL");
  await waitFor("the leader to see m3 down", async () => {
    const node = await a.client.getNode(ids[2]!);
    return node.managerStatus?.reachability === 1 || undefined;
  }, 10_000, 100);
  const live = (await cluster.leader()) === a ? b : a;
  const liveId = (await live.info()).nodeId;
  const demote = await a.cli(["node", "demote", liveId]);
  assert.notEqual(demote.code, 0);
  assert.match(demote.stderr, /quorum/);
  const rmVoter = await a.cli(["node", "rm", ids[2]!]);
  assert.notEqual(rmVoter.code, 0);
  assert.match(rmVoter.stderr, /demote it first/);
  const rmLive = await a.cli(["node", "rm", "--force", liveId]);
  assert.notEqual(rmLive.code, 0);
  // --force on the down manager demotes and removes it in one step: 2 of 2 voters stay reachable.
  const rmDown = await b.cli(["node", "rm", "--force", ids[2]!]);
  assert.equal(rmDown.code, 0, rmDown.stderr);
  await waitForVoters(a, 2, { what: "two voters" });
  assert.equal((await a.client.listNodes()).length, 2);
  await a.putValue("after-force-rm", Buffer.from("ok"));

  // Quorum loss: with one of the two left down every command says so within a few seconds. If b
  // led, a may not have seen its connection to b close yet and forwards the write on it: the send
  // succeeds locally and the connection then fails, so a cannot know whether b applied it and says
  // OUTCOME_UNKNOWN (seen in a soak run); any of these is an answer, not a hang.
  const survivor = a;
  await b.stop("SIGKILL");
  await assert.rejects(survivor.putValue("after-quorum-loss", Buffer.from("x"), 20_000), (err) => {
    assert.ok(isShoalError(err), String(err));
    assert.ok(["NO_QUORUM", "UNAVAILABLE", "NOT_LEADER", "OUTCOME_UNKNOWN"].includes(err.code), `${err.code}: ${err.message}`);
    assert.match(err.message, /quorum|leader/i);
    return true;
  });
  const ls = await survivor.cli(["node", "ls"]);
  assert.notEqual(ls.code, 0);
  assert.match(ls.stderr, /quorum/i);
});
