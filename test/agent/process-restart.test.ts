// A restarted agent kills the process task an earlier agent process left running (found by the PID
// and start time recorded under the worker dir, so a PID reused by another process is left alone),
// and reports a task the managers still think runs here as FAILED instead of leaving it RUNNING.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { ProcessExecutor } from "../../src/agent/executor/process/process-executor.js";
import { SecretFiles } from "../../src/agent/secrets/secret-files.js";
import { TaskRunner } from "../../src/agent/task-runner.js";
import { WorkerState } from "../../src/agent/worker-state.js";
import { TaskState } from "../../src/proto/shoal/v1/objects.js";
import { waitFor } from "../e2e/cluster.js";
import { Feed, makeTask, RecordingSink } from "./runner-fixture.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("a restarted agent kills the process task an earlier agent process left running", { timeout: 30_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-proc-restart-"));
  const secrets = new SecretFiles(`/dev/shm/shoal-test-proc-restart-${process.pid}`);
  const runnerOn = async (): Promise<{ runner: TaskRunner; sink: RecordingSink; feed: Feed }> => {
    const sink = new RecordingSink();
    const runner = new TaskRunner({ executors: [new ProcessExecutor({ clock: systemClock, defaultDir: root })], secrets, reporter: sink, state: new WorkerState(root), clock: systemClock, logger: pino({ level: "silent" }) });
    await runner.recover();
    t.after(() => runner.stop());
    return { runner, sink, feed: new Feed(runner) };
  };
  const first = await runnerOn();
  const task = makeTask({ command: ["sleep", "300"] });
  first.feed.push([task]);
  const running = await first.sink.waitFor(task.id, TaskState.TASK_STATE_RUNNING);
  const recorded = JSON.parse(readFileSync(join(root, "tasks.json"), "utf8")) as { tasks: { taskId: string; record: { pid: number } }[] };
  assert.equal(recorded.tasks[0]!.taskId, task.id);
  assert.equal(recorded.tasks[0]!.record.pid, running.pid);
  assert.ok(!JSON.stringify(recorded).includes("sleep"), "the state file holds IDs and PIDs, not the task's spec");
  assert.ok(alive(running.pid));
  // A second agent process on the same worker dir (the first did not stop its task).
  const second = await runnerOn();
  await waitFor("the leftover process to die", () => !alive(running.pid) || undefined, 10_000);
  await first.sink.waitFor(task.id, TaskState.TASK_STATE_FAILED);
  second.feed.push([{ ...task, status: { ...task.status!, state: TaskState.TASK_STATE_RUNNING } }]);
  const lost = await second.sink.waitFor(task.id, TaskState.TASK_STATE_FAILED);
  assert.match(lost.message, /lost when the agent restarted/);
  t.after(async () => {
    await secrets.wipeAll();
    rmSync(root, { recursive: true, force: true });
  });
});
