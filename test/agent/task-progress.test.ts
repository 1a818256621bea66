// The PREPARING progress hook: an executor's preparation gives the task new PREPARING messages
// (the image's prefetch progress) through the task runner, and the status reporter sends the same
// state again with its new message, while a state never goes back and an end never changes. A
// task stopped while its preparation waits ends SHUTDOWN (its preparation gave up), not REJECTED.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { ShoalError } from "../../src/base/errors.js";
import type { ExecTask, Executor, ExitStatus } from "../../src/agent/executor/executor.js";
import { SecretFiles } from "../../src/agent/secrets/secret-files.js";
import type { SessionLink } from "../../src/agent/session.js";
import { StatusReporter } from "../../src/agent/status-reporter.js";
import { TaskRunner } from "../../src/agent/task-runner.js";
import { WorkerState } from "../../src/agent/worker-state.js";
import type { UpdateTaskStatusRequest } from "../../src/proto/shoal/v1/dispatcher.js";
import { TaskState, type TaskStatus } from "../../src/proto/shoal/v1/objects.js";
import { waitFor } from "../e2e/cluster.js";
import { Feed, makeTask, RecordingSink } from "./runner-fixture.js";

const silent = pino({ level: "silent" });

/** A runc-named executor whose preparation the test scripts; its tasks run until stopped. */
function scriptedExecutor(prepare: (task: ExecTask) => Promise<void>): Executor {
  const exits = new Map<string, (s: ExitStatus) => void>();
  return {
    name: "runc",
    prepare: async (task) => {
      await prepare(task);
      return { uid: 0, gid: 0 };
    },
    start: async (task) => ({ pid: 4242, record: {}, exited: new Promise<ExitStatus>((resolve) => exits.set(task.id, resolve)) }),
    stop: async (id) => exits.get(id)?.({ exitCode: 143, message: "stopped" }),
    remove: async () => undefined,
    cleanupLeftovers: async () => [],
  };
}

function runnerWith(t: { after(fn: () => unknown): void }, executor: Executor) {
  const dir = mkdtempSync(join(tmpdir(), "shoal-task-progress-"));
  const secretsRoot = join(dir, "secrets");
  const sink = new RecordingSink();
  const runner = new TaskRunner({ executors: [executor], secrets: new SecretFiles(secretsRoot), reporter: sink, state: new WorkerState(dir), clock: systemClock, logger: silent });
  t.after(async () => {
    await runner.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { runner, sink, feed: new Feed(runner) };
}

test("a preparation's progress messages are the task's PREPARING messages, and none come after it started", { timeout: 30_000 }, async (t) => {
  let late: ((m: string) => void) | undefined;
  const { sink, feed } = runnerWith(
    t,
    scriptedExecutor(async (task) => {
      task.progress?.("prefetching image: 8 of 64 MiB (peers 8 MiB, registry 0 B)");
      task.progress?.("prefetching image: 64 of 64 MiB (peers 56 MiB, registry 8 MiB)");
      late = task.progress;
    }),
  );
  const task = makeTask({ image: "r.example/app", imageDigest: `sha256:${"a".repeat(64)}` });
  feed.push([task]);
  await sink.waitFor(task.id, TaskState.TASK_STATE_RUNNING);
  late?.("too late");
  const preparing = sink.reports.filter((r) => r.taskId === task.id && r.status.state === TaskState.TASK_STATE_PREPARING).map((r) => r.status.message);
  assert.deepEqual(preparing, ["preparing", "prefetching image: 8 of 64 MiB (peers 8 MiB, registry 0 B)", "prefetching image: 64 of 64 MiB (peers 56 MiB, registry 8 MiB)"]);
  assert.deepEqual(sink.states(task.id), ["ACCEPTED", "PREPARING", "PREPARING", "PREPARING", "STARTING", "RUNNING"]);
});

test("a task stopped while its preparation waits ends SHUTDOWN: the wait is aborted, the task not rejected", { timeout: 30_000 }, async (t) => {
  const { sink, feed } = runnerWith(
    t,
    scriptedExecutor(
      (task) =>
        new Promise<void>((_, reject) => {
          task.signal?.addEventListener("abort", () => reject(new ShoalError("UNAVAILABLE", "the task was stopped while its image was being prefetched")), { once: true });
        }),
    ),
  );
  const task = makeTask({ image: "r.example/app", imageDigest: `sha256:${"b".repeat(64)}` });
  feed.push([task]);
  await sink.waitFor(task.id, TaskState.TASK_STATE_PREPARING);
  feed.push([{ ...task, desiredState: TaskState.TASK_STATE_SHUTDOWN }]);
  const end = await sink.waitFor(task.id, TaskState.TASK_STATE_SHUTDOWN);
  assert.equal(end.message, "shut down before it started");
  assert.ok(!sink.states(task.id).includes("REJECTED"));
});

test("the status reporter sends the same state again with a new message, never a state back or a changed end", { timeout: 30_000 }, async () => {
  const sent: { taskId: string; state: TaskState; message: string }[] = [];
  const link = {
    sessionId: "s1",
    addr: "127.0.0.1:1",
    dispatcher: {
      updateTaskStatus: (req: UpdateTaskStatusRequest, _md: unknown, _opts: unknown, cb: (err: null, res: { refused: [] }) => void) => {
        for (const u of req.updates) sent.push({ taskId: u.taskId, state: u.status!.state, message: u.status!.message });
        cb(null, { refused: [] });
      },
    },
  } as unknown as SessionLink;
  const reporter = new StatusReporter({ clock: systemClock, logger: silent });
  reporter.connected(link);
  const status = (state: TaskState, message: string): TaskStatus => ({ state, message, err: "", timestamp: new Date(), exitCode: 0, pid: 0 });
  const step = async (state: TaskState, message: string, expectSent: boolean): Promise<void> => {
    const count = sent.length;
    reporter.report("t1", status(state, message));
    if (expectSent) await waitFor(`${TaskState[state]} "${message}" sent`, () => sent.length > count && sent.at(-1)!.message === message, 10_000);
    else {
      await new Promise((r) => setTimeout(r, 100)); // several batch windows
      assert.equal(sent.length, count, `${TaskState[state]} "${message}" must not be sent`);
    }
  };
  await step(TaskState.TASK_STATE_PREPARING, "preparing", true);
  await step(TaskState.TASK_STATE_PREPARING, "prefetching image: 1 of 2 MiB (peers 1 MiB, registry 0 B)", true);
  await step(TaskState.TASK_STATE_ACCEPTED, "accepted", false);
  await step(TaskState.TASK_STATE_COMPLETE, "finished", true);
  await step(TaskState.TASK_STATE_COMPLETE, "finished again", false);
  await step(TaskState.TASK_STATE_FAILED, "failed after all", false);
  reporter.stop();
});
