// What `service create` / `service update` decide and show while they wait, as pure functions:
// converged only when every task meant to run is of the current spec and RUNNING and there are as
// many as the service wants (a scale's untouched tasks count, a rolling update's old ones do not, an
// update still UPDATING waits); a failed or rejected task of the new version, a paused or rolled-back
// update, fail it (a failure older than the command does not); a global service with no task yet
// waits. The rows show the PREPARING message (the prefetch progress) and escape a hostile one; the
// prefetch totals line; one line per state change for a non-terminal.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newTask } from "../../src/manager/orchestrator/task-template.js";
import { PrefetchJobStatus } from "../../src/proto/shoal/v1/control.js";
import { Service, ServiceMode, TaskState, UpdateState, type Task } from "../../src/proto/shoal/v1/objects.js";
import { prefetchJobView } from "../../src/cli/prefetch-view.js";
import {
  convergence,
  failureSentence,
  headLine,
  latestPrefetchJob,
  prefetchTotalsLine,
  progressRows,
  renderServiceProgress,
  stateChangeLines,
} from "../../src/cli/service-progress.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const NOW = Date.parse("2026-12-01T12:00:00.000Z");
const MIB = 1024 * 1024;
const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

function service(overrides: Record<string, unknown> = {}, spec: Record<string, unknown> = {}): Service {
  return Service.fromPartial({
    id: id("web"),
    specVersion: 1n,
    spec: { name: "web", replicas: 3, container: { image: "127.0.0.1:5000/web:1" }, ...spec },
    ...overrides,
  });
}

let seq = 0;
function task(svc: Service, where: { slot?: number; nodeId?: string }, state: TaskState, extra: { message?: string; err?: string; desired?: TaskState } = {}): Task {
  const t = newTask(svc, { slot: where.slot ?? 0, nodeId: where.nodeId ?? "", imageDigest: "sha256:" + "1".repeat(64), nowMs: NOW + seq, restartCount: 0, id: id(`t${seq++}`) });
  t.nodeId = where.nodeId ?? (state >= TaskState.TASK_STATE_ASSIGNED ? id(`n${where.slot}`) : "");
  t.desiredState = extra.desired ?? TaskState.TASK_STATE_RUNNING;
  t.status = { state, message: extra.message ?? "", err: extra.err ?? "", timestamp: new Date(NOW + seq), exitCode: 0, pid: 0 };
  return t;
}

const RUNNING = TaskState.TASK_STATE_RUNNING;

test("create: waiting until all replicas RUNNING, then converged; zero replicas converge at once", () => {
  const svc = service();
  const target = { specVersion: 1n };
  assert.deepEqual(convergence(svc, [], target), { kind: "waiting", running: 0, desired: 3, updating: false });
  const two = [task(svc, { slot: 1 }, RUNNING), task(svc, { slot: 2 }, RUNNING), task(svc, { slot: 3 }, TaskState.TASK_STATE_PREPARING)];
  assert.equal(convergence(svc, two, target).kind, "waiting");
  assert.equal(convergence(svc, two, target).running, 2);
  const all = [...two.slice(0, 2), task(svc, { slot: 3 }, RUNNING)];
  assert.deepEqual(convergence(svc, all, target), { kind: "converged", running: 3, desired: 3, updating: false });
  assert.equal(convergence(service({}, { replicas: 0 }), [], target).kind, "converged");
  // A task of another service does not count.
  const other = service({ id: id("api") });
  assert.equal(convergence(svc, [...two.slice(0, 2), task(other, { slot: 3 }, RUNNING)], target).kind, "waiting");
});

test("a task being shut down (scale down) keeps it waiting; once it is no longer meant to run, converged", () => {
  const svc = service({}, { replicas: 2 });
  const tasks = [task(svc, { slot: 1 }, RUNNING), task(svc, { slot: 2 }, RUNNING), task(svc, { slot: 3 }, RUNNING)];
  assert.equal(convergence(svc, tasks, { specVersion: 1n }).kind, "waiting", "3 meant to run, 2 wanted");
  tasks[2]!.desiredState = TaskState.TASK_STATE_SHUTDOWN;
  assert.equal(convergence(svc, tasks, { specVersion: 1n }).kind, "converged");
});

test("update: tasks of the previous spec are not counted; a scale's untouched tasks are; UPDATING waits", () => {
  const v1 = service();
  const old = [task(v1, { slot: 1 }, RUNNING), task(v1, { slot: 2 }, RUNNING), task(v1, { slot: 3 }, RUNNING)];
  // A new image: the old tasks are all RUNNING, but of the previous spec (the orchestrator has not started yet).
  const v2 = service({ specVersion: 2n }, { container: { image: "127.0.0.1:5000/web:2" } });
  const before = convergence(v2, old, { specVersion: 2n });
  assert.equal(before.kind, "waiting");
  assert.equal(before.running, 0);
  const rows = progressRows(v2, old, { specVersion: 2n }, () => "");
  assert.ok(rows.every((r) => r.state === "running (previous spec)"), JSON.stringify(rows));
  const replaced = [task(v2, { slot: 1 }, RUNNING), task(v2, { slot: 2 }, RUNNING), task(v2, { slot: 3 }, RUNNING)];
  for (const t of old) t.desiredState = TaskState.TASK_STATE_SHUTDOWN;
  const updating = service({ specVersion: 2n, updateStatus: { state: UpdateState.UPDATE_STATE_UPDATING, specVersion: 2n } }, { container: { image: "127.0.0.1:5000/web:2" } });
  const monitored = convergence(updating, [...old, ...replaced], { specVersion: 2n });
  assert.equal(monitored.kind, "waiting", "the update's monitor period is not over");
  assert.equal(monitored.updating, true);
  assert.match(headLine("web", monitored), /^web: 3 of 3 tasks running, update in progress$/);
  const completed = service({ specVersion: 2n, updateStatus: { state: UpdateState.UPDATE_STATE_COMPLETED, specVersion: 2n } }, { container: { image: "127.0.0.1:5000/web:2" } });
  assert.equal(convergence(completed, [...old, ...replaced], { specVersion: 2n }).kind, "converged");

  // --replicas 4 only: version 2, the three v1 tasks match the spec and count; the fourth is new.
  const scaled = service({ specVersion: 2n }, { replicas: 4 });
  assert.equal(convergence(scaled, old.map((t) => ({ ...t, desiredState: RUNNING })), { specVersion: 2n }).kind, "waiting");
  const fourth = task(scaled, { slot: 4 }, RUNNING);
  assert.equal(convergence(scaled, [...old.map((t) => ({ ...t, desiredState: RUNNING })), fourth], { specVersion: 2n }).kind, "converged");
});

test("a failed or rejected task of the new version fails it, with the task's error; older failures do not", () => {
  const svc = service({ specVersion: 2n });
  const failed = task(svc, { slot: 2 }, TaskState.TASK_STATE_FAILED, { err: "exit status 1", desired: TaskState.TASK_STATE_SHUTDOWN });
  const tasks = [task(svc, { slot: 1 }, RUNNING), failed, task(svc, { slot: 2 }, TaskState.TASK_STATE_PENDING)];
  const c = convergence(svc, tasks, { specVersion: 2n });
  assert.equal(c.kind, "failed");
  assert.equal(c.failedTask?.id, failed.id);
  const rows = progressRows(svc, tasks, { specVersion: 2n }, (n) => (n === id("n2") ? "w2" : ""));
  assert.ok(rows.some((r) => r.taskId === failed.id && r.state === "failed"), "the failed task is shown");
  assert.equal(failureSentence("web", c, rows), "task web.2 on w2 failed: exit status 1; the service stays; see `shoal service ps web`");
  // The same failure, known before the command (an update that changed nothing): ignored.
  assert.equal(convergence(svc, tasks, { specVersion: 2n, pastFailures: new Set([failed.id]) }).kind, "waiting");
  // A failure of an earlier version is history.
  const v1 = service({ specVersion: 1n });
  const oldFailure = task(v1, { slot: 3 }, TaskState.TASK_STATE_FAILED, { err: "old", desired: TaskState.TASK_STATE_SHUTDOWN });
  assert.equal(convergence(svc, [task(svc, { slot: 1 }, RUNNING), task(svc, { slot: 2 }, RUNNING), task(svc, { slot: 3 }, RUNNING), oldFailure], { specVersion: 2n }).kind, "converged");

  const rejected = task(svc, { slot: 1 }, TaskState.TASK_STATE_REJECTED, { message: "IMAGE_NOT_FOUND: no such tag" });
  rejected.nodeId = "";
  const r = convergence(svc, [rejected], { specVersion: 2n });
  assert.equal(r.kind, "failed");
  assert.equal(failureSentence("web", r, progressRows(svc, [rejected], { specVersion: 2n }, () => "")), "task web.1 was rejected: IMAGE_NOT_FOUND: no such tag; the service stays; see `shoal service ps web`");
});

test("an update that paused or was rolled back fails it with the orchestrator's message; removal too", () => {
  const paused = service({ specVersion: 2n, updateStatus: { state: UpdateState.UPDATE_STATE_PAUSED, specVersion: 2n, message: "update paused: task x (slot 1) failed: boom" } });
  const p = convergence(paused, [], { specVersion: 2n });
  assert.equal(p.kind, "failed");
  assert.equal(failureSentence("web", p, []), "web: update paused: task x (slot 1) failed: boom; the service stays; see `shoal service ps web`");
  const rolledBack = service({ specVersion: 3n, updateStatus: { state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED, specVersion: 3n, message: "update rolled back: task y failed" } });
  assert.equal(convergence(rolledBack, [], { specVersion: 2n }).reason, "update rolled back: task y failed");
  // A paused update of an older version is not this command's.
  const olderPause = service({ specVersion: 2n, updateStatus: { state: UpdateState.UPDATE_STATE_PAUSED, specVersion: 1n, message: "old" } }, { replicas: 0 });
  assert.equal(convergence(olderPause, [], { specVersion: 2n }).kind, "converged");
  assert.equal(convergence(service({ pendingDelete: true }), [], { specVersion: 1n }).kind, "failed");
});

test("global: one per node that has a task; none yet keeps it waiting", () => {
  const svc = service({}, { mode: ServiceMode.SERVICE_MODE_GLOBAL, replicas: 0 });
  assert.equal(convergence(svc, [], { specVersion: 1n }).kind, "waiting");
  const a = task(svc, { nodeId: id("na") }, RUNNING);
  const b = task(svc, { nodeId: id("nb") }, TaskState.TASK_STATE_STARTING);
  assert.deepEqual(convergence(svc, [a, b], { specVersion: 1n }), { kind: "waiting", running: 1, desired: 2, updating: false });
  b.status!.state = RUNNING;
  assert.equal(convergence(svc, [a, b], { specVersion: 1n }).kind, "converged");
  const rows = progressRows(svc, [a, b], { specVersion: 1n }, (n) => (n === id("na") ? "alpha" : ""));
  assert.deepEqual(rows.map((r) => r.name), ["web.alpha", "web.nb0000000000"]);
});

test("rows: PREPARING shows the prefetch progress, PENDING its reason, RUNNING nothing; a hostile message is escaped", () => {
  const svc = service();
  const hostile = "no node\x1b[2J\nforged   w9   running\u202e";
  const tasks = [
    task(svc, { slot: 3 }, TaskState.TASK_STATE_PENDING, { message: hostile }),
    task(svc, { slot: 1 }, RUNNING, { message: "started" }),
    task(svc, { slot: 2 }, TaskState.TASK_STATE_PREPARING, { message: "prefetching image: 40 of 64 MiB (peers 32 MiB, registry 8 MiB)" }),
  ];
  const rows = progressRows(svc, tasks, { specVersion: 1n }, (n) => ({ [id("n1")]: "w1", [id("n2")]: "w2" })[n] ?? "");
  assert.deepEqual(
    rows.map((r) => [r.name, r.node, r.state, r.message]),
    [
      ["web.1", "w1", "running", ""],
      ["web.2", "w2", "preparing", "prefetching image: 40 of 64 MiB (peers 32 MiB, registry 8 MiB)"],
      ["web.3", "", "pending", "no node\\x1b[2J\\x0aforged   w9   running\\u202e"],
    ],
  );
  const c = convergence(svc, tasks, { specVersion: 1n });
  const text = renderServiceProgress("web", c, rows);
  assert.doesNotMatch(text, RAW_UNSAFE);
  const lines = text.trimEnd().split("\n");
  assert.equal(lines[0], "web: 1 of 3 tasks running");
  assert.match(lines[1]!, /^TASK +NODE +STATE +MESSAGE$/);
  assert.match(lines[3]!, /^web\.2 +w2 +preparing +prefetching image: 40 of 64 MiB \(peers 32 MiB, registry 8 MiB\)$/);
  assert.equal(lines.length, 5);
  assert.equal(renderServiceProgress("web", convergence(svc, [], { specVersion: 1n }), []), "web: 0 of 3 tasks running\n  (no tasks yet)\n");
});

test("the prefetch totals line: the newest job's state, size, nodes done, bytes from peers and the registry", () => {
  const job = (specVersion: bigint, state: string) =>
    prefetchJobView(
      PrefetchJobStatus.fromPartial({
        jobId: `j${specVersion}`,
        serviceId: id("web"),
        specVersion,
        image: `127.0.0.1:5000/web:${specVersion}`,
        state,
        sizeBytes: BigInt(64 * MIB),
        startedAt: new Date(NOW - Number(specVersion) * 1000),
        nodes: [
          { nodeId: id("n1"), role: "seed", state: "done", bytesFromRegistry: BigInt(64 * MIB) },
          { nodeId: id("n2"), role: "peer", state: "running", bytesFromPeers: BigInt(32 * MIB), bytesFromRegistry: BigInt(8 * MIB) },
        ],
      }),
      () => "web",
      () => "",
    );
  const latest = latestPrefetchJob([job(1n, "done"), job(2n, "running")]);
  assert.equal(latest?.specVersion, 2);
  assert.equal(prefetchTotalsLine(latest!), "prefetch running: 1 of 2 nodes done, 32.0 MiB from peers, 72.0 MiB from the registry (image 64.0 MiB)");
  assert.equal(latestPrefetchJob([]), undefined);
  const svc = service();
  assert.match(renderServiceProgress("web", convergence(svc, [], { specVersion: 1n }), [], latest), /\nprefetch running: .*\n$/);
});

test("lines for a non-terminal: one per task state change, the reason of a pending task, not the prefetch progress", () => {
  const svc = service({}, { replicas: 1 });
  const seen = new Map<string, string>();
  const pending = task(svc, { slot: 1 }, TaskState.TASK_STATE_PENDING, { message: "no node in zone a satisfies the task" });
  assert.deepEqual(stateChangeLines(seen, progressRows(svc, [pending], { specVersion: 1n }, () => "")), ["web.1: pending: no node in zone a satisfies the task"]);
  assert.deepEqual(stateChangeLines(seen, progressRows(svc, [pending], { specVersion: 1n }, () => "")), [], "nothing changed, nothing printed");
  pending.nodeId = id("n1");
  pending.status = { ...pending.status!, state: TaskState.TASK_STATE_PREPARING, message: "prefetching image: 1 of 64 MiB" };
  assert.deepEqual(stateChangeLines(seen, progressRows(svc, [pending], { specVersion: 1n }, () => "w1")), ["web.1: preparing on w1"]);
  pending.status = { ...pending.status!, message: "prefetching image: 2 of 64 MiB" };
  assert.deepEqual(stateChangeLines(seen, progressRows(svc, [pending], { specVersion: 1n }, () => "w1")), [], "progress alone is no state change");
  pending.status = { ...pending.status!, state: RUNNING };
  assert.deepEqual(stateChangeLines(seen, progressRows(svc, [pending], { specVersion: 1n }, () => "w1")), ["web.1: running on w1"]);
});
