// What `service ls|ps|inspect`, `node ps` and `secret ls|inspect` print: REPLICAS as running/desired
// (global: one per task meant to run), services being removed marked, task history and reasons, the
// network mode visible, and no secret data in any output even when a (buggy) server sends some.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { runCli } from "../../src/cli/program.js";
import { serviceInspectView, serviceRow, serviceView, taskRows, taskView } from "../../src/cli/views.js";
import {
  NetworkMode,
  NodeRole,
  RestartCondition,
  Service,
  ServiceMode,
  Task,
  TaskState,
  UpdateState,
} from "../../src/proto/shoal/v1/objects.js";
import { FakeDaemon } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const NOW = Date.parse("2026-12-01T12:00:00.000Z");
const minutesAgo = (m: number): Date => new Date(NOW - m * 60_000);
const SECRET_MARKER = "s3cr3t-MARKER-do-not-print-41";

// Loosely typed: the views must cope with whatever a server sends.
function task(t: { state: TaskState; desired?: TaskState; when?: Date; status?: object; spec?: object; [field: string]: unknown }): Task {
  return Task.fromPartial({
    serviceName: "web",
    desiredState: t.desired ?? TaskState.TASK_STATE_RUNNING,
    ...t,
    status: { state: t.state, timestamp: t.when, ...t.status },
  } as unknown as Parameters<typeof Task.fromPartial>[0]);
}

const web = Service.fromPartial({
  id: id("svc"),
  meta: { version: 12n },
  specVersion: 3n,
  spec: {
    name: "web",
    replicas: 3,
    zone: "a",
    container: {
      image: "127.0.0.1:5000/web:2",
      network: NetworkMode.NETWORK_MODE_HOST,
      limits: { memoryBytes: 256n << 20n, nanoCpus: 500_000_000n, pids: 64n },
      secrets: [{ secretId: id("sec"), secretName: "db", target: "db" }],
      stopGracePeriodMs: 30_000n,
      user: "1000:1000",
      capDrop: ["ALL"],
    },
    restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ON_FAILURE, delayMs: 5000n, maxAttempts: 3, windowMs: 60_000n },
  },
  previousSpec: { name: "web", replicas: 3, container: { image: "127.0.0.1:5000/web:1" } },
  updateStatus: { state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED, message: "manually requested rollback", startedAt: minutesAgo(1) },
});

const webTasks = [
  task({ id: id("t1new"), serviceId: web.id, slot: 1, nodeId: id("n1"), state: TaskState.TASK_STATE_RUNNING, when: minutesAgo(5), zone: "a", spec: { image: "127.0.0.1:5000/web:2", network: NetworkMode.NETWORK_MODE_HOST } }),
  task({ id: id("t1old"), serviceId: web.id, slot: 1, nodeId: id("n1"), state: TaskState.TASK_STATE_FAILED, desired: TaskState.TASK_STATE_SHUTDOWN, when: minutesAgo(6), zone: "a", status: { err: "exit code 137 (out of memory)", exitCode: 137 } }),
  task({ id: id("t2"), serviceId: web.id, slot: 2, nodeId: "", state: TaskState.TASK_STATE_PENDING, when: minutesAgo(0), zone: "a", status: { message: "no node in zone a satisfies engine.labels.disk==ssd" } }),
  task({ id: id("t3"), serviceId: web.id, slot: 3, nodeId: id("n2"), state: TaskState.TASK_STATE_RUNNING, desired: TaskState.TASK_STATE_SHUTDOWN, when: minutesAgo(1), zone: "a" }),
];

test("service ls: running/desired counts only tasks meant to run; global desired is its tasks; rm is marked", () => {
  assert.deepEqual(serviceRow(serviceView(web, webTasks)), [id("svc"), "web", "replicated", "1/3", "127.0.0.1:5000/web:2", "a"]);
  const agent = Service.fromPartial({ id: id("glob"), spec: { name: "agent", mode: ServiceMode.SERVICE_MODE_GLOBAL, container: { command: ["a"] } } });
  const agentTasks = [TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_STARTING].map((state, i) =>
    task({ id: id(`g${i}`), serviceId: agent.id, nodeId: id(`n${i}`), state, serviceName: "agent" }),
  );
  agentTasks.push(task({ id: id("gold"), serviceId: agent.id, nodeId: id("n9"), state: TaskState.TASK_STATE_SHUTDOWN, desired: TaskState.TASK_STATE_SHUTDOWN, serviceName: "agent" }));
  assert.deepEqual(serviceRow(serviceView(agent, agentTasks)), [id("glob"), "agent", "global", "2/3", "(process)", "default"]);
  const removing = Service.fromPartial({ ...web, pendingDelete: true });
  assert.equal(serviceRow(serviceView(removing, webTasks))[3], "1/0 (removing)");
  assert.equal(serviceView(removing, webTasks).pendingDelete, true);
});

test("service ps: history under the current task, age, the reason a task is pending or failed, truncation", () => {
  const views = webTasks.map((t) => taskView(t, (nodeId) => (nodeId === id("n1") ? "w-a1" : "")));
  const rows = taskRows(views, { nowMs: NOW, noTrunc: false });
  assert.deepEqual(rows[0], [id("t1new").slice(0, 12), "web.1", "127.0.0.1:5000/web:2", "w-a1", "a", "host", "Running", "Running 5 minutes ago", ""]);
  assert.deepEqual(rows[1]!.slice(1, 2), [" \\_ web.1"], "the failed predecessor sits under the current task");
  assert.equal(rows[1]![7], "Failed 6 minutes ago");
  assert.equal(rows[1]![8], "exit code 137 (out of memory)");
  assert.equal(rows[2]![7], "Pending less than a second ago");
  assert.equal(rows[2]![8], "no node in zone a satisfies engine.labels.disk==ssd", "a pending task says why");
  assert.equal(rows[3]![6], "Shutdown");
  const long = taskView(task({ id: id("tl"), serviceId: web.id, slot: 4, state: TaskState.TASK_STATE_REJECTED, status: { err: `image 127.0.0.1:5000/web:2 not found: ${"x".repeat(100)}` } }), () => "");
  assert.equal(taskRows([long], { nowMs: NOW, noTrunc: false })[0]![8]!.length, 60);
  assert.ok(taskRows([long], { nowMs: NOW, noTrunc: false })[0]![8]!.endsWith("…"));
  assert.equal(taskRows([long], { nowMs: NOW, noTrunc: true })[0]![8], long.error);
  assert.equal(taskRows([long], { nowMs: NOW, noTrunc: true })[0]![0], id("tl"));
  // A running task's informational message is not an error.
  const fine = taskView(task({ id: id("tf"), serviceId: web.id, slot: 5, state: TaskState.TASK_STATE_RUNNING, status: { message: "started" } }), () => "");
  assert.equal(fine.error, "");
  // Global tasks are named service.nodeID, as Docker names them.
  const global = taskView(task({ id: id("tg"), serviceId: id("glob"), serviceName: "agent", slot: 0, nodeId: id("node7"), state: TaskState.TASK_STATE_RUNNING }), () => "h7");
  assert.equal(global.name, `agent.${id("node7")}`);
  assert.equal(taskRows([global], { nowMs: NOW, noTrunc: false })[0]![1], `agent.${id("node7").slice(0, 12)}`);
});

test("service inspect: host network, limits, restart policy, previous spec and update status are visible", () => {
  const v = serviceInspectView(web, webTasks);
  assert.equal(v.spec.network, "host");
  assert.deepEqual(v.spec.limits, { memoryBytes: 256 * 1024 * 1024, cpus: "0.5", pids: 64 });
  assert.deepEqual(v.spec.restartPolicy, { condition: "on-failure", delay: "5s", maxAttempts: 3, window: "1m" });
  assert.equal(v.spec.stopGracePeriod, "30s");
  assert.deepEqual(v.spec.capDrop, ["ALL"]);
  assert.equal(v.previousSpec?.image, "127.0.0.1:5000/web:1");
  assert.equal(v.previousSpec?.network, "isolated");
  assert.deepEqual(v.updateStatus, { state: "rollback-started", message: "manually requested rollback", startedAt: minutesAgo(1).toISOString(), completedAt: "" });
  assert.equal(v.specVersion, 3);
  assert.deepEqual(v.taskImageDigests, [], "no task carries a digest yet");
  const resolved = webTasks.map((t) => ({ ...t, spec: { ...t.spec!, imageDigest: `sha256:${"1".repeat(64)}` } }));
  assert.deepEqual(serviceInspectView(web, resolved).taskImageDigests, [`sha256:${"1".repeat(64)}`]);
  assert.deepEqual([v.runningTasks, v.desiredTasks], [1, 3]);
  assert.equal(serviceInspectView(Service.fromPartial({ id: id("new"), spec: { name: "n" } }), []).previousSpec, null);
});

let fake: FakeDaemon;
before(async () => {
  fake = await FakeDaemon.start();
});
after(async () => {
  await fake.stop();
});

async function shoal(args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await runCli(["--socket", fake.socketPath, ...args], { stdout: (t) => (out += t), stderr: (t) => (out += t), stdin: Readable.from([]), env: {} });
  return { code, out };
}

test("no command prints secret data, even when the server sends it back", async () => {
  const data = Buffer.from(SECRET_MARKER);
  const secret = { id: id("sec"), spec: { name: "db", data, zone: "a" }, dataMac: "ab".repeat(32), sizeBytes: data.length };
  fake.reset({
    info: () => ({ nodeId: id("n1"), role: NodeRole.NODE_ROLE_MANAGER }),
    listSecrets: () => ({ secrets: [secret] }),
    getSecret: () => ({ secret }),
    listServices: () => ({ services: [web] }),
    listNodes: () => ({ nodes: [{ id: id("n1"), description: { hostname: "w-a1" } }] }),
    listTasks: (req: { nodeId: string }) => ({ tasks: webTasks.filter((t) => req.nodeId === "" || t.nodeId === req.nodeId) }),
  });
  const outputs: string[] = [];
  for (const args of [
    ["secret", "ls"], ["secret", "ls", "--format", "json"], ["secret", "inspect", "db"],
    ["service", "ls"], ["service", "ls", "--format", "json"], ["service", "inspect", "web"],
    ["service", "ps", "web"], ["service", "ps", "web", "--format", "json", "--no-trunc"], ["node", "ps"], ["node", "ps", "w-a1", "--format", "json"],
  ]) {
    const r = await shoal(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.out}`);
    outputs.push(r.out);
  }
  const all = outputs.join("\n");
  for (const encoding of ["utf8", "base64", "hex"] as const) assert.ok(!all.includes(data.toString(encoding)), `secret data (${encoding}) printed`);
  const inspected = JSON.parse(outputs[2]!);
  assert.equal(inspected.dataMac, "ab".repeat(32), "inspect shows the keyed MAC");
  assert.equal("digest" in inspected, false);
  assert.equal(JSON.parse(outputs[5]!).spec.network, "host");
  // node ps without a name lists this node's tasks (from `info`).
  const nodeCalls = fake.callsTo("listTasks").filter((r) => r.nodeId !== "");
  assert.deepEqual(nodeCalls.map((r) => r.nodeId), [id("n1"), id("n1")]);
  assert.match(outputs[8]!, /^ID +NAME +IMAGE +NODE +ZONE +NETWORK +DESIRED STATE +CURRENT STATE +ERROR$/m);
  assert.match(outputs[8]!, /web\.1 +127\.0\.0\.1:5000\/web:2 +w-a1 +a +host +Running/);
  assert.equal(JSON.parse(outputs[9]!).length, 2);
});
