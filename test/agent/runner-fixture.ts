// Test parts for the worker's task runner: a busybox root filesystem made from /bin/busybox with
// symlinks (no registry: an ImageProvider that copies it), a status sink that records every report,
// and assignments fed to the runner as the Assignments stream would.
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ImageConfig, ImageProvider } from "../../src/agent/executor/executor.js";
import { AssignmentSet } from "../../src/agent/assignment-set.js";
import type { TaskRunner, TaskStatusSink } from "../../src/agent/task-runner.js";
import { AssignmentAction, AssignmentsMessage_Type, type AssignmentChange } from "../../src/proto/shoal/v1/dispatcher.js";
import { ContainerSpec, Secret, Task, TaskState, type TaskStatus } from "../../src/proto/shoal/v1/objects.js";
import { newId } from "../../src/base/ids.js";
import { waitFor } from "../e2e/cluster.js";

export { filesContaining } from "../e2e/cluster.js";

export const BUSYBOX = "/bin/busybox";
const APPLETS = ["sh", "echo", "sleep", "cat", "id", "ls", "dd", "head", "stat", "rm", "true", "false", "grep", "touch"];

/** Fails with what to install (never a silent skip) when the container tools are missing. */
export function requireContainerTools(): void {
  for (const path of [BUSYBOX, "/usr/sbin/runc"]) {
    if (!existsSync(path)) throw new Error(`${path} is missing: apt-get install -y runc busybox-static`);
  }
}

/** An ImageProvider that "unpacks" a busybox image: /bin/busybox, applet symlinks, /etc/passwd. */
export function busyboxProvider(calls: { image: string; digest: string }[] = []): ImageProvider {
  return {
    async prepareRootfs({ image, digest, rootfsDir }): Promise<ImageConfig> {
      calls.push({ image, digest });
      if (existsSync(rootfsDir)) throw new Error(`${rootfsDir} exists already`);
      // No /tmp, as in minimal images: the executor makes the mount point (1777) for its tmpfs.
      for (const d of ["bin", "etc", "proc", "sys", "dev", "run"]) mkdirSync(join(rootfsDir, d), { recursive: true });
      copyFileSync(BUSYBOX, join(rootfsDir, "bin/busybox"));
      for (const applet of APPLETS) symlinkSync("busybox", join(rootfsDir, "bin", applet));
      writeFileSync(join(rootfsDir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n");
      writeFileSync(join(rootfsDir, "etc/group"), "root:x:0:\napp:x:1000:\n");
      return { entrypoint: [], cmd: ["sh"], env: ["PATH=/bin"], workingDir: "/", user: "" };
    },
  };
}

export interface Report {
  taskId: string;
  status: TaskStatus;
  atMs: number;
}

export class RecordingSink implements TaskStatusSink {
  readonly reports: Report[] = [];
  report(taskId: string, status: TaskStatus): void {
    this.reports.push({ taskId, status, atMs: Date.now() });
  }
  forget(): void {}
  states(taskId: string): string[] {
    return this.reports.filter((r) => r.taskId === taskId).map((r) => TaskState[r.status.state]!.replace("TASK_STATE_", ""));
  }
  last(taskId: string): TaskStatus | undefined {
    return this.reports.filter((r) => r.taskId === taskId).at(-1)?.status;
  }
  waitFor(taskId: string, state: TaskState, timeoutMs = 20_000): Promise<TaskStatus> {
    return waitFor(`task ${taskId} to be ${TaskState[state]} (so far ${this.states(taskId).join(" → ")})`, () => this.reports.find((r) => r.taskId === taskId && r.status.state === state)?.status, timeoutMs, 20);
  }
}

export function makeTask(spec: Partial<ContainerSpec>, extra: Partial<Task> = {}): Task {
  return Task.fromPartial({
    id: newId(),
    serviceId: "svc",
    nodeId: "node",
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_ASSIGNED, message: "assigned" },
    spec: ContainerSpec.fromPartial(spec),
    executor: spec.image ? "runc" : "process",
    ...extra,
  });
}

export function makeSecret(name: string, data: Buffer): Secret {
  return Secret.fromPartial({ id: newId(), spec: { name, data } });
}

/** Feeds COMPLETE sets to a runner, as the Assignments stream would. */
export class Feed {
  readonly set = new AssignmentSet();
  private seq = 0;
  constructor(private readonly runner: TaskRunner) {}
  push(tasks: Task[], secrets: Secret[] = []): void {
    const changes: AssignmentChange[] = [
      ...tasks.map((task) => ({ assignment: { task }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
      ...secrets.map((secret) => ({ assignment: { secret }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
    ];
    this.set.streamOpened();
    const outcome = this.set.apply({ type: AssignmentsMessage_Type.TYPE_COMPLETE, appliesTo: "", resultsIn: String(++this.seq), changes });
    if (!outcome.applied) throw new Error(outcome.reason);
    this.runner.sync(this.set);
  }
}

