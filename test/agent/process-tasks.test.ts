// The worker agent end to end with the process executor: the real Agent over mutual TLS to a
// dispatcher the test scripts (scripted-dispatcher.ts), asserting on what the dispatcher received.
// A task runs to RUNNING then COMPLETE (exit 0); a failing one is FAILED with its exit code; desired
// SHUTDOWN stops a task with SIGTERM, and with SIGKILL after the grace when it ignores SIGTERM;
// start_after is honoured; the secret file exists (0400 in a 0700 directory) only while its task
// runs, and its bytes are in no file under the agent's data dir and in no log line; a gap in the
// assignments reopens the stream; refused status calls and a manager failover lose no status; the
// node reports its executors, resources and engine labels.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { systemRandom } from "../../src/base/random.js";
import { Agent } from "../../src/agent/agent.js";
import { ProcessExecutor } from "../../src/agent/executor/process/process-executor.js";
import { TaskState } from "../../src/proto/shoal/v1/objects.js";
import { waitFor } from "../e2e/cluster.js";
import { makePki, type Pki } from "../transport/fixtures.js";
import { filesContaining, makeSecret, makeTask } from "./runner-fixture.js";
import { ScriptedDispatcher, ScriptedStore } from "./scripted-dispatcher.js";

// A liveness guard, far above the < 1 s a task normally takes: a soak run with the machine loaded
// well past both cores (load average near 10) once took longer than an earlier 20 s guard.
const GUARD_MS = 45_000;

interface Running {
  agent: Agent;
  dir: string;
  secretsRoot: string;
  logLines: string[];
  store: ScriptedStore;
  dispatchers: ScriptedDispatcher[];
}

let pki: Pki | undefined;
function thePki(t: TestContext): Pki {
  if (pki === undefined) {
    pki = makePki();
    const made = pki;
    process.once("exit", () => made.cleanup());
  }
  void t;
  return pki;
}

async function startAgent(t: TestContext, opts: { dispatchers?: number; engineLabels?: Record<string, string> } = {}): Promise<Running> {
  const p = thePki(t);
  const store = new ScriptedStore();
  const dispatchers: ScriptedDispatcher[] = [];
  for (let i = 0; i < (opts.dispatchers ?? 1); i++) dispatchers.push(await ScriptedDispatcher.start(p, store, `m${i + 1}`));
  const root = mkdtempSync(join(tmpdir(), "shoal-agent-proc-"));
  const dir = join(root, "worker");
  const secretsRoot = `/dev/shm/shoal-test-proc-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
  const logLines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });
  const agent = new Agent({
    nodeId: p.worker.nodeId,
    clusterId: p.clusterId,
    rootCaPem: p.ca.rootCaPem,
    managers: dispatchers.map((d) => d.addr),
    identity: () => ({ certPem: p.worker.certPem, keyPem: p.worker.keyPem }),
    advertiseAddr: "",
    hostname: "worker-1",
    engineLabels: opts.engineLabels,
    clock: systemClock,
    random: systemRandom,
    logger,
    worker: { workerDir: dir, executors: [new ProcessExecutor({ clock: systemClock, defaultDir: root })], secretsRoot },
    onRenewed: async () => undefined,
    onRemoved: () => undefined,
  });
  agent.start();
  t.after(async () => {
    await agent.stop();
    for (const d of dispatchers) await d.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(secretsRoot, { recursive: true, force: true });
  });
  await waitFor("the agent's assignments stream", () => dispatchers.some((d) => d.hasStream), GUARD_MS);
  return { agent, dir: root, secretsRoot, logLines, store, dispatchers };
}

/** On a timeout the error says what the dispatcher saw and what the agent logged last, so a failure explains itself. */
async function waitState(r: Running, taskId: string, state: TaskState) {
  try {
    return await waitFor(`task ${taskId} ${TaskState[state]} at the dispatcher`, () => r.store.status(taskId, state), GUARD_MS, 20);
  } catch (err) {
    const seen = r.store.states(taskId).join(" → ") || "nothing";
    throw new Error(`${(err as Error).message}; the dispatcher saw: ${seen}; the agent's last log lines:\n${r.logLines.slice(-40).join("")}`, { cause: err });
  }
}

const RANK = ["ACCEPTED", "PREPARING", "STARTING", "RUNNING"];
function assertForward(states: string[]): void {
  const ranks = states.map((s) => (RANK.includes(s) ? RANK.indexOf(s) : 10));
  for (let i = 1; i < ranks.length; i++) assert.ok(ranks[i]! > ranks[i - 1]!, `states only move forward: ${states.join(" → ")}`);
}

test("process tasks: RUNNING then COMPLETE, FAILED with the exit code, the node's description", { timeout: 180_000 }, async (t) => {
  const r = await startAgent(t, { engineLabels: { disk: "ssd" } });
  const d = r.dispatchers[0]!;
  const ok = makeTask({ command: ["sh", "-c", "sleep 0.3; exit 0"] });
  const bad = makeTask({ command: ["sh", "-c", "exit 3"] });
  d.update([ok, bad]);
  await waitState(r, ok.id, TaskState.TASK_STATE_RUNNING);
  const done = await waitState(r, ok.id, TaskState.TASK_STATE_COMPLETE);
  assert.equal(done!.exitCode, 0);
  const failed = await waitState(r, bad.id, TaskState.TASK_STATE_FAILED);
  assert.equal(failed!.exitCode, 3);
  assertForward(r.store.states(ok.id));
  assertForward(r.store.states(bad.id));
  assert.equal(r.store.states(ok.id).at(-1), "COMPLETE");
  const description = d.descriptions[0]!;
  assert.deepEqual(description.executors, ["process"]);
  assert.deepEqual(description.engineLabels, { disk: "ssd" });
  assert.equal(description.hostname, "worker-1");
  assert.ok(description.resources!.memoryBytes > 0n && description.resources!.nanoCpus >= 1_000_000_000n);
  // A command that does not exist fails to start: FAILED with a message, the agent stays up.
  const missing = makeTask({ command: ["/nonexistent/binary"] });
  d.update([missing]);
  const notStarted = await waitState(r, missing.id, TaskState.TASK_STATE_FAILED);
  assert.match(notStarted!.message, /cannot start/);
});

test("desired SHUTDOWN: SIGTERM, then SIGKILL after the grace period; start_after is honoured", { timeout: 180_000 }, async (t) => {
  const r = await startAgent(t);
  const d = r.dispatchers[0]!;
  const polite = makeTask({ command: ["sleep", "30"], stopGracePeriodMs: 10_000n });
  // `trap "" TERM` is inherited by sleep: neither exits on SIGTERM.
  const stubborn = makeTask({ command: ["sh", "-c", 'trap "" TERM; sleep 30'], stopGracePeriodMs: 600n });
  const startAfter = new Date(Date.now() + 800);
  const later = makeTask({ command: ["true"] }, { startAfter });
  d.update([polite, stubborn, later]);
  await waitState(r, polite.id, TaskState.TASK_STATE_RUNNING);
  await waitState(r, stubborn.id, TaskState.TASK_STATE_RUNNING);
  const askedAt = Date.now();
  d.update([{ ...polite, desiredState: TaskState.TASK_STATE_SHUTDOWN }, { ...stubborn, desiredState: TaskState.TASK_STATE_SHUTDOWN }]);
  const politeEnd = await waitState(r, polite.id, TaskState.TASK_STATE_SHUTDOWN);
  assert.equal(politeEnd!.exitCode, 143, "SIGTERM ended it (128 + 15), not the SIGKILL 10 s later");
  const stubbornEnd = await waitState(r, stubborn.id, TaskState.TASK_STATE_SHUTDOWN);
  assert.equal(stubbornEnd!.exitCode, 137, "SIGKILL after the grace (128 + 9)");
  const stubbornAt = r.store.updates.find((u) => u.update.taskId === stubborn.id && u.update.status?.state === TaskState.TASK_STATE_SHUTDOWN)!.atMs;
  assert.ok(stubbornAt - askedAt >= 600, `the SIGKILL waited for the 600 ms grace (${stubbornAt - askedAt} ms)`);
  t.diagnostic(`stop with a 600 ms grace took ${stubbornAt - askedAt} ms`);
  const starting = await waitState(r, later.id, TaskState.TASK_STATE_COMPLETE);
  const startedAt = r.store.updates.find((u) => u.update.taskId === later.id && [TaskState.TASK_STATE_STARTING, TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_COMPLETE].includes(u.update.status!.state))!;
  assert.ok(startedAt.update.status!.timestamp!.getTime() >= startAfter.getTime(), "not started before start_after");
  assert.equal(starting!.exitCode, 0);
  // A task shut down before its start_after never runs.
  const never = makeTask({ command: ["sh", "-c", "exit 5"] }, { startAfter: new Date(Date.now() + 60_000) });
  d.update([never]);
  await waitState(r, never.id, TaskState.TASK_STATE_ACCEPTED);
  d.update([{ ...never, desiredState: TaskState.TASK_STATE_SHUTDOWN }]);
  const neverEnd = await waitState(r, never.id, TaskState.TASK_STATE_SHUTDOWN);
  assert.match(neverEnd!.message, /before it started/);
  assert.ok(!r.store.states(never.id).includes("RUNNING"));
});

test("secrets: a 0400 file in a 0700 tmpfs directory only while the task runs; never on disk or in the log", { timeout: 180_000 }, async (t) => {
  const r = await startAgent(t);
  const d = r.dispatchers[0]!;
  const secretBytes = Buffer.from(`pr0cess-secret-${process.pid}-${Date.now()}`);
  const secret = makeSecret("db", secretBytes);
  const other = makeSecret("api", Buffer.from(`other-secret-${process.pid}`));
  const task = makeTask({
    command: ["sh", "-c", 'test -s "$SHOAL_SECRETS_DIR/s" && cat "$SHOAL_SECRETS_DIR/s" > /dev/null || exit 9; sleep 30'],
    secrets: [
      { secretId: secret.id, secretName: "db", target: "s" },
      { secretId: other.id, secretName: "api", target: "" },
    ],
    stopGracePeriodMs: 2000n,
  });
  d.update([task], [secret, other]);
  await waitState(r, task.id, TaskState.TASK_STATE_RUNNING);
  const dir = join(r.secretsRoot, task.id, "secrets");
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, "s")).mode & 0o777, 0o400);
  assert.deepEqual(readFileSync(join(dir, "s")), secretBytes);
  assert.ok(existsSync(join(dir, "api")), "a reference without a target uses the secret's name");
  // Withdrawn while the task runs: its file goes.
  d.removeSecret(other);
  await waitFor("the withdrawn secret's file to go", () => !existsSync(join(dir, "api")), GUARD_MS);
  assert.ok(existsSync(join(dir, "s")));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(!r.store.states(task.id).includes("FAILED"), "the task read its secret (it exits 9 otherwise)");
  d.update([{ ...task, desiredState: TaskState.TASK_STATE_SHUTDOWN }]);
  await waitState(r, task.id, TaskState.TASK_STATE_SHUTDOWN);
  await waitFor("the task's secret directory to go", () => !existsSync(join(r.secretsRoot, task.id)), GUARD_MS);
  // Not under the agent's data dir (task state, bundles), not in any log line.
  assert.deepEqual(filesContaining(r.dir, secretBytes), []);
  assert.ok(r.logLines.length > 0, "the agent logged something");
  assert.equal(r.logLines.filter((l) => l.includes(secretBytes.toString()) || l.includes(secretBytes.toString("base64"))).length, 0);
});

test("a gap in the assignments reopens the stream for a complete set", { timeout: 180_000 }, async (t) => {
  const r = await startAgent(t);
  const d = r.dispatchers[0]!;
  assert.equal(d.assignmentStreamsOpened, 1);
  const first = makeTask({ command: ["sleep", "30"] });
  d.update([first]);
  await waitState(r, first.id, TaskState.TASK_STATE_RUNNING);
  // An incremental that names a set the agent never had: the agent must not apply it.
  const skipped = makeTask({ command: ["true"] });
  d.store.tasks.set(skipped.id, skipped);
  d.incremental([{ assignment: { task: skipped }, action: 0 }], "12345");
  await waitFor("a second assignments stream", () => d.assignmentStreamsOpened >= 2 || undefined, GUARD_MS);
  assert.equal(r.agent.assignmentStats.gaps, 1);
  // The complete set on the new stream has both; the running task kept running (no second start).
  await waitState(r, skipped.id, TaskState.TASK_STATE_COMPLETE);
  assert.deepEqual(r.store.states(first.id).filter((s) => s === "RUNNING"), ["RUNNING"]);
  assert.ok(!r.store.states(first.id).some((s) => s === "SHUTDOWN" || s === "FAILED"));
});

test("status updates survive refused calls and a manager failover, and only move forward", { timeout: 180_000 }, async (t) => {
  const r = await startAgent(t, { dispatchers: 2 });
  const [a, b] = r.dispatchers as [ScriptedDispatcher, ScriptedDispatcher];
  const first = a.hasStream ? a : b;
  const second = first === a ? b : a;
  first.refuseStatusCalls = 3;
  const task = makeTask({ command: ["sleep", "30"], stopGracePeriodMs: 1000n });
  first.update([task]);
  await waitState(r, task.id, TaskState.TASK_STATE_RUNNING);
  assert.ok(first.statusCalls > 3, "the refused calls were retried");
  // The manager holding the session goes away; the agent moves to the other and keeps reporting there.
  await first.stop();
  await waitFor("the agent on the other manager", () => second.hasStream || undefined, GUARD_MS);
  second.update([{ ...r.store.tasks.get(task.id)!, desiredState: TaskState.TASK_STATE_SHUTDOWN }]);
  const end = await waitState(r, task.id, TaskState.TASK_STATE_SHUTDOWN);
  assert.equal(end!.exitCode, 143);
  assert.equal(r.store.updates.find((u) => u.update.status?.state === TaskState.TASK_STATE_SHUTDOWN)!.via, second.name);
  assertForward(r.store.states(task.id));
  assert.equal(r.store.states(task.id).filter((s) => s === "RUNNING").length, 1, "the task was not restarted by the failover");
});
