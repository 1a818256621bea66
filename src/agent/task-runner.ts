// The task runner: turns the node's assignments into running tasks and back (DESIGN.md §7). A task
// assigned here with desired state RUNNING is accepted, waits for its start_after, is prepared
// (image, bundle), gets its secret files on tmpfs just before it starts, runs, and ends COMPLETE
// (exit 0), FAILED (exit code) or REJECTED (could not be prepared); desired SHUTDOWN, or the task
// leaving the assignments, stops it (SIGTERM, grace, SIGKILL) and it ends SHUTDOWN. Every state goes
// to the StatusReporter. Wiring only: executors and secret files are injected.
import type { Logger } from "pino";
import type { Clock, Timer } from "../base/clock.js";
import { isShoalError } from "../base/errors.js";
import { unsafeCharIndex } from "../base/text.js";
import { TaskState, type Task, type TaskStatus } from "../proto/shoal/v1/objects.js";
import type { AssignmentSet } from "./assignment-set.js";
import { DEFAULT_STOP_GRACE_MS, type ExecTask, type Executor, type StartedTask } from "./executor/executor.js";
import type { SecretFile, SecretFiles } from "./secrets/secret-files.js";
import { isTerminal, stateRank } from "./status-reporter.js";
import { DEFAULT_TASK_LOG_BYTES, TaskLog } from "./task-log.js";
import type { WorkerState } from "./worker-state.js";

/** Status messages are bounded by the dispatcher (1024 bytes) and must not carry control characters. */
const MAX_MESSAGE_CHARS = 900;

function cleanMessage(text: string): string {
  let out = text;
  while (unsafeCharIndex(out) >= 0) out = out.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/gu, " ");
  return out.length > MAX_MESSAGE_CHARS ? `${out.slice(0, MAX_MESSAGE_CHARS)}…` : out;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Where task states go (the StatusReporter in the agent). */
export interface TaskStatusSink {
  report(taskId: string, status: TaskStatus): void;
  /** The task left the assignments: its bookkeeping can go. */
  forget(taskId: string): void;
}

export interface TaskRunnerOptions {
  executors: readonly Executor[];
  secrets: SecretFiles;
  reporter: TaskStatusSink;
  state: WorkerState;
  clock: Clock;
  logger: Logger;
}

/** One task's life on this node. */
class TaskController {
  task: Task;
  private stopping = false;
  /** Whether the end is worth reporting (not when the task left the assignments). */
  private reportEnd = true;
  private started: StartedTask | undefined;
  /** Aborted by a stop: a preparation still waiting (for its image) gives up. */
  private readonly stopSignal = new AbortController();
  private wake: (() => void) | undefined;
  private startTimer: Timer | undefined;
  secretsWritten = new Map<string, string>(); // secret ID → target
  readonly log = new TaskLog(DEFAULT_TASK_LOG_BYTES, () => this.opts.clock.nowMs());
  readonly done: Promise<void>;

  constructor(
    task: Task,
    private readonly executor: Executor,
    private readonly runner: TaskRunner,
    private readonly opts: TaskRunnerOptions,
  ) {
    this.task = task;
    this.done = this.run().catch((err) => this.opts.logger.error({ taskId: task.id, err: errorText(err) }, "task controller failed"));
  }

  private report(state: TaskState, message: string, extra: Partial<TaskStatus> = {}): void {
    if (!this.reportEnd && isTerminal(state)) return;
    this.opts.logger.debug({ taskId: this.task.id, state: TaskState[state], exitCode: extra.exitCode }, "task state");
    this.opts.reporter.report(this.task.id, { state, message: cleanMessage(message), err: extra.err !== undefined ? cleanMessage(extra.err) : "", timestamp: new Date(this.opts.clock.nowMs()), exitCode: extra.exitCode ?? 0, pid: extra.pid ?? 0 });
  }

  private get graceMs(): number {
    const ms = Number(this.task.spec?.stopGracePeriodMs ?? 0n);
    return ms > 0 ? ms : DEFAULT_STOP_GRACE_MS;
  }

  /** The task changed in the assignments. */
  update(task: Task): void {
    this.task = task;
    if (task.desiredState !== TaskState.TASK_STATE_RUNNING && stateRank(task.desiredState) >= stateRank(TaskState.TASK_STATE_COMPLETE)) this.requestStop(true);
  }

  /** Stops the task; `report` false when it left the assignments (no one wants its end any more). */
  requestStop(report: boolean): void {
    if (!report) this.reportEnd = false;
    if (this.stopping) return;
    this.stopping = true;
    this.startTimer?.cancel();
    this.wake?.();
    this.stopSignal.abort();
    if (this.started !== undefined) void this.executor.stop(this.task.id, this.graceMs).catch(() => undefined);
  }

  private async waitForStartAfter(): Promise<void> {
    // Re-checked after each wake: a timer may fire a millisecond before the wall clock reaches it.
    for (;;) {
      const at = this.task.startAfter?.getTime();
      const waitMs = at === undefined ? 0 : at - this.opts.clock.nowMs();
      if (waitMs <= 0 || this.stopping) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.startTimer = this.opts.clock.setTimeout(resolve, waitMs + 1);
      });
    }
  }

  private execTask(): ExecTask {
    const spec = this.task.spec!;
    return {
      id: this.task.id,
      spec,
      output: (stream, chunk) => this.log.append(stream, chunk),
      // Only while it prepares; the reporter sends a same-state update with its new message.
      progress: (message) => {
        if (!this.stopping && this.started === undefined) this.report(TaskState.TASK_STATE_PREPARING, message);
      },
      signal: this.stopSignal.signal,
    };
  }

  private async run(): Promise<void> {
    const id = this.task.id;
    const log = this.opts.logger.child({ taskId: id });
    try {
      this.report(TaskState.TASK_STATE_ACCEPTED, "accepted");
      await this.waitForStartAfter();
      if (this.stopping) {
        this.report(TaskState.TASK_STATE_SHUTDOWN, "shut down before it started");
        return;
      }
      this.report(TaskState.TASK_STATE_PREPARING, "preparing");
      let owner;
      try {
        owner = await this.executor.prepare(this.execTask());
      } catch (err) {
        if (this.stopping) {
          this.report(TaskState.TASK_STATE_SHUTDOWN, "shut down before it started");
          return;
        }
        log.info({ code: isShoalError(err) ? err.code : undefined, err: errorText(err) }, "task rejected");
        this.report(TaskState.TASK_STATE_REJECTED, errorText(err), { err: errorText(err) });
        return;
      }
      if (this.stopping) {
        this.report(TaskState.TASK_STATE_SHUTDOWN, "shut down before it started");
        return;
      }
      let secretsDir: string | undefined;
      try {
        secretsDir = await this.writeSecrets(owner);
      } catch (err) {
        this.report(TaskState.TASK_STATE_REJECTED, errorText(err), { err: errorText(err) });
        return;
      }
      this.report(TaskState.TASK_STATE_STARTING, "starting");
      try {
        this.started = await this.executor.start(this.execTask(), secretsDir);
      } catch (err) {
        this.report(TaskState.TASK_STATE_FAILED, `cannot start: ${errorText(err)}`, { err: errorText(err), exitCode: 127 });
        return;
      }
      await this.opts.state.set({ taskId: id, executor: this.executor.name, state: TaskState[TaskState.TASK_STATE_RUNNING], record: this.started.record }).catch((err) => log.warn({ err: errorText(err) }, "cannot record the task's state"));
      this.report(TaskState.TASK_STATE_RUNNING, "running", { pid: this.started.pid });
      if (this.stopping) void this.executor.stop(id, this.graceMs).catch(() => undefined);
      const exit = await this.started.exited;
      if (this.stopping) this.report(TaskState.TASK_STATE_SHUTDOWN, `shut down (${exit.message})`, { exitCode: exit.exitCode });
      else if (exit.exitCode === 0) this.report(TaskState.TASK_STATE_COMPLETE, "finished", { exitCode: 0 });
      else this.report(TaskState.TASK_STATE_FAILED, `task ${exit.message}`, { exitCode: exit.exitCode, err: exit.message });
    } finally {
      await this.opts.secrets.remove(id).catch((err) => log.warn({ err: errorText(err) }, "cannot remove the task's secret files"));
      await this.executor.remove(id).catch((err) => log.warn({ err: errorText(err) }, "cannot remove the task's container"));
      await this.opts.state.delete(id).catch(() => undefined);
      this.runner.finished(this);
    }
  }

  /** The secret files the task references, from the pushed secrets; none: no directory. */
  private async writeSecrets(owner: { uid: number; gid: number }): Promise<string | undefined> {
    const refs = this.task.spec?.secrets ?? [];
    if (refs.length === 0) return undefined;
    const files: SecretFile[] = [];
    for (const ref of refs) {
      const secret = this.runner.secret(ref.secretId);
      if (secret === undefined) throw new Error(`secret ${ref.secretName || ref.secretId} was not received from the managers`);
      const target = ref.target !== "" ? ref.target : ref.secretName;
      files.push({ target, data: secret });
      this.secretsWritten.set(ref.secretId, target);
    }
    return this.opts.secrets.write(this.task.id, files, owner);
  }
}

export class TaskRunner {
  private readonly controllers = new Map<string, TaskController>();
  /** Tasks that ended here and are still in the assignments: never started again. */
  private readonly ended = new Set<string>();
  private readonly logs = new Map<string, TaskLog>();
  private set: AssignmentSet | undefined;
  private ready: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly byName: Map<string, Executor>;

  constructor(private readonly opts: TaskRunnerOptions) {
    this.byName = new Map(opts.executors.map((e) => [e.name, e]));
  }

  get executorNames(): string[] {
    return [...this.byName.keys()];
  }

  /**
   * At agent start: every secret file goes, and whatever an earlier agent process left (recorded
   * tasks, containers in this agent's runc root) is killed and removed.
   */
  recover(): Promise<void> {
    this.ready = (async () => {
      await this.opts.secrets.wipeAll();
      const recorded = await this.opts.state.load().catch((err: unknown) => {
        this.opts.logger.warn({ err: errorText(err) }, "cannot read the worker's task state; cleaning up what the executors find");
        return [];
      });
      for (const executor of this.byName.values()) {
        const removed = await executor.cleanupLeftovers(recorded.filter((r) => r.executor === executor.name)).catch((err: unknown) => {
          this.opts.logger.warn({ executor: executor.name, err: errorText(err) }, "cannot clean up leftover tasks");
          return [] as string[];
        });
        if (removed.length > 0) this.opts.logger.info({ executor: executor.name, tasks: removed }, "removed tasks an earlier agent process left running");
      }
      await this.opts.state.clear();
    })();
    return this.ready;
  }

  secret(id: string): Uint8Array | undefined {
    return this.set?.secrets.get(id)?.spec?.data;
  }

  /** The kept output of a task that runs or ran here (undefined: unknown). */
  taskLog(taskId: string): TaskLog | undefined {
    return this.controllers.get(taskId)?.log ?? this.logs.get(taskId);
  }

  get runningTaskIds(): string[] {
    return [...this.controllers.keys()];
  }

  /** Reconciles with the assignments after each applied message. */
  sync(set: AssignmentSet): void {
    this.set = set;
    void this.ready.catch(() => undefined).then(() => this.reconcile(set));
  }

  private reconcile(set: AssignmentSet): void {
    if (this.stopped) return;
    for (const [id, controller] of this.controllers) {
      const task = set.tasks.get(id);
      if (task === undefined) controller.requestStop(false);
      else controller.update(task);
      for (const [secretId, target] of controller.secretsWritten) {
        if (!set.secrets.has(secretId)) {
          controller.secretsWritten.delete(secretId);
          void this.opts.secrets.removeFile(id, target).catch(() => undefined);
        }
      }
    }
    for (const id of this.ended) {
      if (!set.tasks.has(id)) {
        this.ended.delete(id);
        this.logs.delete(id);
        this.opts.reporter.forget(id);
      }
    }
    for (const task of set.tasks.values()) {
      if (this.controllers.has(task.id) || this.ended.has(task.id)) continue;
      this.consider(task);
    }
  }

  private consider(task: Task): void {
    const current = task.status?.state ?? TaskState.TASK_STATE_NEW;
    if (isTerminal(current)) return;
    if (stateRank(current) > stateRank(TaskState.TASK_STATE_ASSIGNED)) {
      // The managers think it runs here, but this agent process never started it: it was lost
      // with an earlier agent process (whose leftovers recover() removed).
      this.ended.add(task.id);
      this.opts.reporter.report(task.id, { state: TaskState.TASK_STATE_FAILED, message: "the task's process was lost when the agent restarted", err: "agent restarted", timestamp: new Date(this.opts.clock.nowMs()), exitCode: 0, pid: 0 });
      return;
    }
    if (task.desiredState !== TaskState.TASK_STATE_RUNNING) {
      if (stateRank(task.desiredState) >= stateRank(TaskState.TASK_STATE_COMPLETE)) {
        this.ended.add(task.id);
        this.opts.reporter.report(task.id, { state: TaskState.TASK_STATE_SHUTDOWN, message: "shut down before it started", err: "", timestamp: new Date(this.opts.clock.nowMs()), exitCode: 0, pid: 0 });
      }
      return;
    }
    const wanted = task.executor !== "" ? task.executor : task.spec?.image !== "" ? "runc" : "process";
    const executor = this.byName.get(wanted);
    if (executor === undefined || task.spec === undefined) {
      this.ended.add(task.id);
      this.opts.reporter.report(task.id, { state: TaskState.TASK_STATE_REJECTED, message: `this node has no ${wanted} executor (it has: ${this.executorNames.join(", ") || "none"})`, err: "no executor", timestamp: new Date(this.opts.clock.nowMs()), exitCode: 0, pid: 0 });
      return;
    }
    this.controllers.set(task.id, new TaskController(task, executor, this, this.opts));
  }

  /** Called by a controller when its task is over and cleaned up. */
  finished(controller: TaskController): void {
    const id = controller.task.id;
    if (this.controllers.get(id) !== controller) return;
    this.controllers.delete(id);
    if (this.set?.tasks.has(id) === true && !this.stopped) {
      this.ended.add(id);
      this.logs.set(id, controller.log);
    } else {
      this.opts.reporter.forget(id);
    }
  }

  /** Agent stop: every task is stopped (each with its grace period, in parallel) and removed. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.ready.catch(() => undefined);
    const all = [...this.controllers.values()];
    for (const c of all) c.requestStop(false);
    await Promise.all(all.map((c) => c.done));
  }
}
