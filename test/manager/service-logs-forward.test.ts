// `service logs` asked on a follower: the follower forwards the stream to the leader (mutual TLS,
// the follower's own certificate), whose log broker fans in from both managers' agents. Two
// in-process managers, a replicated process service with a task on each node (the real orchestrator
// and scheduler place them), each task printing a line naming itself to stdout and one to stderr.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { NodeAvailability, NodeState, ServiceSpec, TaskState, type LogLine } from "../../src/proto/shoal/v1/objects.js";
import { freePort, waitFor, waitForVoters } from "../e2e/cluster.js";

const GUARD_MS = 45_000;

interface Running {
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
}

async function collect(client: DaemonClient, serviceId: string): Promise<LogLine[]> {
  const lines: LogLine[] = [];
  const s = client.serviceLogs({ serviceId, follow: false, tail: -1 }, (batch) => lines.push(...batch));
  let guard: NodeJS.Timeout | undefined;
  try {
    await Promise.race([s.done, new Promise((_, reject) => (guard = setTimeout(() => reject(new Error("service logs did not end")), GUARD_MS)))]);
  } finally {
    clearTimeout(guard);
  }
  return lines;
}

test("a follower forwards service logs to the leader, which gathers every node's lines", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-logs-fwd-"));
  const daemons: Running[] = [];
  t.after(async () => {
    for (const d of daemons) {
      d.client.close();
      await d.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  for (const name of ["m1", "m2"]) {
    const addr = `127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon({ dataDir: join(root, name), listenAddr: addr, logger: pino({ level: "silent" }), raftTiming: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 }, heartbeatPeriodMs: 300 });
    daemons.push({ daemon, client: new DaemonClient(daemon.socketPath), addr });
  }
  const [m1, m2] = daemons as [Running, Running];
  const init = await m1.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  await m2.client.join({ token: init.managerToken, remoteAddr: m1.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  await waitForVoters(m1, 2, { timeoutMs: 30_000 });
  await waitFor("both agents connected", () => daemons.every((d) => d.daemon.nodeAgent?.isConnected) || undefined, GUARD_MS);
  await waitFor("both nodes ready", async () => ((await m1.client.listNodes()).filter((n) => n.status?.state === NodeState.NODE_STATE_READY).length === 2) || undefined, GUARD_MS);

  const service = await m1.client.createService({
    spec: ServiceSpec.fromPartial({ name: "echo", replicas: 2, container: { command: ["sh", "-c", 'echo "hello from $(hostname)-$$"; echo oops >&2; sleep 300'] } }),
  });
  await waitFor(
    "two tasks RUNNING on two nodes",
    async () => {
      const tasks = (await m1.client.listTasks({ serviceId: service.id, nodeId: "" })).filter((x) => x.status?.state === TaskState.TASK_STATE_RUNNING);
      return (tasks.length === 2 && new Set(tasks.map((x) => x.nodeId)).size === 2) || undefined;
    },
    GUARD_MS,
    50,
  );
  const leaderNodeId = (await m1.client.info()).leaderNodeId;
  const follower = (await m1.client.info()).nodeId === leaderNodeId ? m2 : m1;
  assert.notEqual((await follower.client.info()).nodeId, leaderNodeId, "asking a follower");

  let lines: LogLine[] = [];
  const startedAt = Date.now();
  // Each task prints its lines right after it starts: ask again until both nodes' output is in.
  await waitFor(
    "both tasks' lines through the follower",
    async () => {
      lines = await collect(follower.client, service.id);
      return lines.filter((l) => Buffer.from(l.data).toString().startsWith("hello from")).length === 2 && lines.filter((l) => Buffer.from(l.data).toString() === "oops").length === 2 ? true : undefined;
    },
    GUARD_MS,
    100,
  );
  t.diagnostic(`service logs through the follower: both nodes' lines ${Date.now() - startedAt} ms after both tasks were RUNNING`);
  const tasks = await m1.client.listTasks({ serviceId: service.id, nodeId: "" });
  assert.deepEqual(new Set(lines.map((l) => l.taskId)), new Set(tasks.filter((x) => x.status?.state === TaskState.TASK_STATE_RUNNING).map((x) => x.id)));
  assert.deepEqual(new Set(lines.map((l) => l.slot)), new Set(tasks.map((x) => x.slot)));
});
