// `service logs` end to end on a real in-process manager (TLS, raft, encrypted store) whose own agent
// runs a process task that prints known lines to stdout and stderr: the stream returns them with the
// task's slot and node (tail N gives the last N), --follow delivers a line printed after it started
// and its cancel reaches the agent, and takes in the service's tasks that start after it began (with
// their first lines); another node's session cannot listen or publish for a task it
// does not run (PERMISSION_DENIED), and its lines for its own task do arrive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ShoalError, isShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { formatLogLine } from "../../src/cli/commands/service-logs.js";
import type { DaemonClient } from "../../src/cli/daemon-client.js";
import { DispatcherClient, type PublishLogsMessage, type SubscriptionMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { LogStream, Task, TaskState, type LogLine } from "../../src/proto/shoal/v1/objects.js";
import type { SecureChannel } from "../../src/transport/client.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { MAX_LOG_LINE_BYTES, MAX_LOG_LINES_PER_MESSAGE } from "../../src/state/limits.js";
import { waitFor } from "../e2e/cluster.js";
import { ARRIVAL_GUARD_MS, assignTask, connect, createService, joinWorker, loggedManager } from "./dispatcher-fixture.js";

const GUARD_MS = 30_000;

const text = (l: LogLine): string => Buffer.from(l.data).toString("utf8");

/** Collects a `service logs` call to its end (non-follow). */
async function collect(client: DaemonClient, serviceId: string, tail: number): Promise<LogLine[]> {
  const lines: LogLine[] = [];
  const s = client.serviceLogs({ serviceId, follow: false, tail }, (batch) => lines.push(...batch));
  let guard: NodeJS.Timeout | undefined;
  try {
    await Promise.race([s.done, new Promise((_, reject) => (guard = setTimeout(() => reject(new Error("service logs did not end")), GUARD_MS)))]);
  } finally {
    clearTimeout(guard);
  }
  return lines;
}

function listen(ch: SecureChannel, sessionId: string): { messages: SubscriptionMessage[]; ended: Promise<ShoalError>; cancel: () => void } {
  const messages: SubscriptionMessage[] = [];
  const stream = ch.client(DispatcherClient).listenSubscriptions({ sessionId });
  const ended = new Promise<ShoalError>((resolve) => {
    stream.on("data", (m: SubscriptionMessage) => messages.push(m));
    stream.on("error", (err) => resolve(fromGrpcError(err)));
    stream.on("end", () => resolve(new ShoalError("UNAVAILABLE", "ended")));
  });
  return { messages, ended, cancel: () => stream.cancel() };
}

function publish(ch: SecureChannel, messages: PublishLogsMessage[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = ch.client(DispatcherClient).publishLogs((err) => (err ? reject(fromGrpcError(err)) : resolve()));
    for (const m of messages) call.write(m);
    call.end();
  });
}

test("service logs reads a task's stdout and stderr through the manager, with tail, follow and node binding", { timeout: 120_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-logs-");
  const scratch = mkdtempSync(join(tmpdir(), "shoal-logs-go-"));
  t.after(() => rmSync(scratch, { recursive: true, force: true }));
  const agent = m.daemon.nodeAgent!;
  await waitFor("the node's agent connected", () => agent?.isConnected, GUARD_MS);
  const nodeId = m.init.nodeId;
  const hostname = m.ctx.store.getNode(nodeId)?.description?.hostname ?? "";
  assert.notEqual(hostname, "", "the node reported its hostname");
  const service = await createService(m, "web", "");
  const go = join(scratch, "go");
  const script = `echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; printf 'bell\\a\\tend\\n'; while [ ! -e '${go}' ]; do sleep 0.05; done; echo later; sleep 300`;
  const task = Task.fromPartial({
    id: newId(),
    serviceId: service.id,
    serviceName: "web",
    slot: 1,
    nodeId,
    zone: "",
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_ASSIGNED, message: "assigned by the test" },
    spec: { command: ["sh", "-c", script], stopGracePeriodMs: 200n },
    executor: "process",
    specVersion: 1n,
  });
  await m.ctx.propose((tx) => tx.createTask(task));
  await waitFor("the task RUNNING", () => m.ctx.store.getTask(task.id)?.status?.state === TaskState.TASK_STATE_RUNNING || undefined, GUARD_MS, 20);
  await waitFor("the task's first four lines in the agent's ring", () => (agent.runner!.taskLog(task.id)?.lines().length ?? 0) >= 4 || undefined, GUARD_MS, 20);

  // Without --follow: every kept line, each with its stream, the task's slot and its node; the stream ends.
  const all = await collect(m.client, service.id, -1);
  assert.deepEqual(all.map(text), ["out1", "err1", "out2", "bell\x07\tend"]);
  assert.deepEqual(all.map((l) => l.stream), [LogStream.LOG_STREAM_STDOUT, LogStream.LOG_STREAM_STDERR, LogStream.LOG_STREAM_STDOUT, LogStream.LOG_STREAM_STDOUT]);
  assert.ok(all.every((l) => l.taskId === task.id && l.slot === 1 && l.node === hostname && l.timestamp !== undefined));
  assert.equal(formatLogLine(all[3]!, "web", { timestamps: false }), `web.1@${hostname} | bell\\x07\tend\n`, "control characters escaped, tab kept");
  assert.deepEqual((await collect(m.client, service.id, 2)).map(text), ["out2", "bell\x07\tend"], "--tail 2");
  assert.deepEqual(await collect(m.client, service.id, 0), [], "--tail 0");

  // --follow --tail 0: nothing old, then the line printed after the stream opened; cancel reaches the agent.
  const followed: LogLine[] = [];
  const f = m.client.serviceLogs({ serviceId: service.id, follow: true, tail: 0 }, (batch) => followed.push(...batch));
  let followError: unknown;
  f.done.catch((err) => (followError = err));
  await waitFor("the agent following the task's log", () => agent.runner!.taskLog(task.id)!.followerCount === 1 || undefined, GUARD_MS, 20);
  writeFileSync(go, "");
  await waitFor("the later line", () => followed.some((l) => text(l) === "later") || undefined, GUARD_MS, 20);
  assert.deepEqual(followed.map(text), ["later"]);
  f.cancel();
  await f.done;
  assert.equal(followError, undefined);
  await waitFor("the agent's publisher released the subscription", () => (agent.logPublisher!.activeCount === 0 && agent.runner!.taskLog(task.id)!.followerCount === 0) || undefined, GUARD_MS, 20);

  // Another node: its own session hears only of its own task; it may publish lines for that task only.
  const w = await joinWorker(m, "w2");
  const link = await connect(m, w);
  t.after(() => link.close());
  const stolen = listen(link.ch, agent.lastSession!.sessionId);
  let stolenGuard: NodeJS.Timeout | undefined;
  const stolenEnd = await Promise.race([stolen.ended, new Promise<"open">((r) => (stolenGuard = setTimeout(() => r("open"), ARRIVAL_GUARD_MS)))]);
  clearTimeout(stolenGuard);
  assert.ok(stolenEnd !== "open" && isShoalError(stolenEnd, "PERMISSION_DENIED"), `ListenSubscriptions with another node's session: ${String(stolenEnd)}`);
  const wTask = await assignTask(m, { service, nodeId: w.nodeId, zone: "" });
  const own = listen(link.ch, link.sessionId);
  t.after(() => own.cancel());
  await new Promise((r) => setTimeout(r, 200)); // the listener registered on the leader
  const lines: LogLine[] = [];
  const g = m.client.serviceLogs({ serviceId: service.id, follow: true, tail: 0 }, (batch) => lines.push(...batch));
  g.done.catch(() => undefined);
  await waitFor("w's subscription", () => own.messages.length > 0 || undefined, ARRIVAL_GUARD_MS, 20);
  const sub = own.messages[0]!;
  assert.deepEqual(sub.taskIds, [wTask.id], "w is subscribed to its own task only");
  const line = (taskId: string, data: string): LogLine => ({ taskId, timestamp: new Date(), stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from(data), slot: 0, node: "" });
  await publish(link.ch, [{ sessionId: link.sessionId, subscriptionId: sub.id, lines: [line(wTask.id, "from-w")], close: false }]);
  await waitFor("w's line at the client", () => lines.some((l) => text(l) === "from-w") || undefined, ARRIVAL_GUARD_MS, 20);
  assert.equal(lines.find((l) => text(l) === "from-w")!.node, "w2");
  await assert.rejects(
    publish(link.ch, [{ sessionId: link.sessionId, subscriptionId: sub.id, lines: [line(task.id, "forged")], close: false }]),
    (e) => isShoalError(e, "PERMISSION_DENIED"),
    "publishing a line for a task w does not run",
  );
  await assert.rejects(
    publish(link.ch, [{ sessionId: agent.lastSession!.sessionId, subscriptionId: sub.id, lines: [line(task.id, "forged2")], close: false }]),
    (e) => isShoalError(e, "PERMISSION_DENIED"),
    "publishing on another node's session",
  );
  await assert.rejects(
    publish(link.ch, [{ sessionId: link.sessionId, subscriptionId: sub.id, lines: Array.from({ length: MAX_LOG_LINES_PER_MESSAGE + 1 }, () => line(wTask.id, "x")), close: false }]),
    (e) => isShoalError(e, "INVALID_ARGUMENT"),
    "more lines in one message than the bound",
  );
  await assert.rejects(
    publish(link.ch, [{ sessionId: link.sessionId, subscriptionId: sub.id, lines: [line(wTask.id, "y".repeat(MAX_LOG_LINE_BYTES + 1))], close: false }]),
    (e) => isShoalError(e, "INVALID_ARGUMENT"),
    "a line longer than the bound",
  );
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!lines.some((l) => text(l) === "x" || text(l).startsWith("yyy")), "nothing of a refused message reached the client");
  assert.ok(!lines.some((l) => text(l).startsWith("forged")), "no forged line reached the client");
  g.cancel();
  await g.done.catch(() => undefined);
});

test("service logs --follow takes in the service's tasks that start after it began, with their first lines", { timeout: 120_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-logs-grow-");
  const agent = m.daemon.nodeAgent!;
  await waitFor("the node's agent connected", () => agent?.isConnected, GUARD_MS);
  const nodeId = m.init.nodeId;
  const service = await createService(m, "grow", "");
  const followed: LogLine[] = [];
  const f = m.client.serviceLogs({ serviceId: service.id, follow: true, tail: -1 }, (batch) => followed.push(...batch));
  let followError: unknown;
  f.done.catch((err) => (followError = err));
  await new Promise((r) => setTimeout(r, 200)); // the subscription is open (it names no task yet)

  const start = async (slot: number, words: string[]): Promise<Task> => {
    const task = Task.fromPartial({
      id: newId(),
      serviceId: service.id,
      serviceName: "grow",
      slot,
      nodeId,
      zone: "",
      desiredState: TaskState.TASK_STATE_RUNNING,
      status: { state: TaskState.TASK_STATE_ASSIGNED, message: "assigned by the test" },
      spec: { command: ["sh", "-c", `${words.map((w) => `echo ${w}`).join("; ")}; sleep 300`], stopGracePeriodMs: 200n },
      executor: "process",
      specVersion: 1n,
    });
    await m.ctx.propose((tx) => tx.createTask(task));
    return task;
  };
  // A task that starts after the stream opened: its lines, from the first (printed before the agent
  // heard of the grown subscription), arrive once each.
  const a = await start(1, ["a1", "a2"]);
  await waitFor("a's lines", () => (followed.filter((l) => l.taskId === a.id).length >= 2 ? true : undefined), GUARD_MS, 20);
  const b = await start(2, ["b1"]);
  await waitFor("b's line", () => followed.some((l) => l.taskId === b.id) || undefined, GUARD_MS, 20);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(followed.filter((l) => l.taskId === a.id).map(text), ["a1", "a2"]);
  assert.deepEqual(followed.filter((l) => l.taskId === b.id).map(text), ["b1"]);
  assert.ok(followed.every((l) => l.slot === (l.taskId === a.id ? 1 : 2)), "each line carries its task's slot");
  f.cancel();
  await f.done;
  assert.equal(followError, undefined);
});
