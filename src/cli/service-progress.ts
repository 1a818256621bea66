// What `service create` / `service update` show while they wait for the service to converge, as
// pure functions of what ListTasks, GetService and ListPrefetchJobs answer: whether the spec version
// the command wrote has converged (every task that should run is RUNNING), failed (one of its tasks
// FAILED or was REJECTED, or its rolling update paused or was rolled back) or is still on its way;
// the rows of the live display (per slot, or per node for a global service: the state, and while
// PREPARING the task's message, which carries the P2P prefetch progress); the prefetch job's totals
// line; and the lines a non-terminal prints, one per task state change. Strings from the store or a
// node are escaped (views.ts's taskView does it), so a task's message cannot drive the terminal.
import { escapeUnsafeChars as shown } from "../base/text.js";
import { serviceFingerprint, taskFingerprint } from "../manager/orchestrator/task-template.js";
import { ServiceMode, TaskState, UpdateState, type Service, type Task } from "../proto/shoal/v1/objects.js";
import { bytesText, type PrefetchJobView } from "./prefetch-view.js";
import { renderTable, taskStateName, taskView } from "./views.js";

export interface WatchTarget {
  /** The spec version the command wrote (spec_version of the service it got back). */
  specVersion: bigint;
  /** Tasks whose failure is older than the command (ignored): see watchService's ignoreEarlierFailures. */
  pastFailures?: ReadonlySet<string>;
}

export type ConvergenceKind = "waiting" | "converged" | "failed";

export interface Convergence {
  kind: ConvergenceKind;
  /** Tasks of the current spec that are meant to run and RUNNING. */
  running: number;
  /** Tasks that should run: the replicas, or for a global service one per node that has a task. */
  desired: number;
  /** Why it failed, one sentence (kind "failed"). */
  reason?: string;
  /** The task that failed, when a task did. */
  failedTask?: Task;
  /** The rolling update of the target version is still going (its monitor period included). */
  updating: boolean;
}

const FAILED_STATES: ReadonlySet<TaskState> = new Set([TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED]);

function stateOf(task: Task): TaskState {
  return task.status?.state ?? TaskState.TASK_STATE_NEW;
}

function newestFirst(a: Task, b: Task): number {
  const at = (t: Task): number => t.status?.timestamp?.getTime() ?? t.meta?.createdAt?.getTime() ?? 0;
  return at(b) - at(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** A task of the target version that failed or was rejected, and is not from before the command. */
export function failedTasks(service: Service, tasks: readonly Task[], target: WatchTarget): Task[] {
  return tasks
    .filter((t) => t.serviceId === service.id && t.specVersion === target.specVersion && FAILED_STATES.has(stateOf(t)) && target.pastFailures?.has(t.id) !== true)
    .sort(newestFirst)
    .reverse(); // the first to fail first
}

/**
 * Where the service stands against the spec version the command wrote. "Current" tasks are those
 * whose spec matches the service's (the orchestrator's own test, so a task a scale left untouched
 * counts, and one a rolling update has yet to replace does not); it has converged when every task
 * meant to run is current and RUNNING, there are as many as it should run, and no rolling update
 * of that version is still going.
 */
export function convergence(service: Service, tasks: readonly Task[], target: WatchTarget): Convergence {
  const spec = service.spec;
  const global = spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL;
  const own = tasks.filter((t) => t.serviceId === service.id);
  const live = own.filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING);
  const fingerprint = serviceFingerprint(service);
  const current = live.filter((t) => taskFingerprint(t) === fingerprint);
  const running = current.filter((t) => stateOf(t) === TaskState.TASK_STATE_RUNNING).length;
  const desired = global ? new Set(live.map((t) => t.nodeId)).size : (spec?.replicas ?? 0);
  const status = service.updateStatus;
  const ours = status !== undefined && status.specVersion >= target.specVersion;
  const updating = ours && (status.state === UpdateState.UPDATE_STATE_UPDATING || status.state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED);
  const base = { running, desired, updating };

  const failed = failedTasks(service, tasks, target)[0];
  if (failed !== undefined) return { ...base, kind: "failed", failedTask: failed, reason: "" };
  if (service.pendingDelete) return { ...base, kind: "failed", reason: `service ${shown(spec?.name ?? service.id)} is being removed` };
  if (ours) {
    const message = shown(status.message);
    if (status.state === UpdateState.UPDATE_STATE_PAUSED || status.state === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED) {
      return { ...base, kind: "failed", reason: message || "the update paused" };
    }
    const rolledBack = status.state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED || status.state === UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED;
    if (rolledBack && status.specVersion > target.specVersion) return { ...base, kind: "failed", reason: message || "the update was rolled back" };
  }
  const settled = current.length === live.length && running === current.length && current.length === desired;
  // A global service with no task yet: the orchestrator has not made them (or no node is eligible).
  const converged = settled && !updating && (!global || desired > 0);
  return { ...base, kind: converged ? "converged" : "waiting" };
}

export interface ProgressRow {
  taskId: string;
  /** `web.2` (replicated) or `web.<node>` (global). */
  name: string;
  /** Hostname, else the node ID cut to 12; "" while unassigned. */
  node: string;
  /** Lower-case state name; " (previous spec)" for a task a rolling update has yet to replace. */
  state: string;
  /** Why it is pending, failed or rejected; else, before RUNNING, its message (PREPARING: the prefetch progress). */
  message: string;
  slot: number;
  nodeId: string;
}

/** The rows shown: every task meant to run, and the failed tasks of the target version. */
export function progressRows(service: Service, tasks: readonly Task[], target: WatchTarget, hostnameOf: (nodeId: string) => string): ProgressRow[] {
  const fingerprint = serviceFingerprint(service);
  const failed = new Set(failedTasks(service, tasks, target).map((t) => t.id));
  const shownTasks = tasks.filter((t) => t.serviceId === service.id && (t.desiredState <= TaskState.TASK_STATE_RUNNING || failed.has(t.id)));
  return shownTasks
    .map((task) => {
      const view = taskView(task, hostnameOf);
      const state = stateOf(task);
      const node = view.nodeHostname || view.nodeId.slice(0, 12);
      const name = task.slot > 0 || task.nodeId === "" ? view.name : `${view.serviceName}.${node}`;
      const previous = task.desiredState <= TaskState.TASK_STATE_RUNNING && taskFingerprint(task) !== fingerprint;
      const message = view.error !== "" ? view.error : state < TaskState.TASK_STATE_RUNNING ? view.message : "";
      return { taskId: view.id, name, node, state: `${taskStateName(state)}${previous ? " (previous spec)" : ""}`, message, slot: task.slot, nodeId: task.nodeId };
    })
    .sort((a, b) => a.slot - b.slot || a.node.localeCompare(b.node) || a.nodeId.localeCompare(b.nodeId) || a.taskId.localeCompare(b.taskId));
}

/** The job of the service's newest spec version, if the leader has one. */
export function latestPrefetchJob(jobs: readonly PrefetchJobView[]): PrefetchJobView | undefined {
  return [...jobs].sort((a, b) => b.specVersion - a.specVersion || b.startedAt.localeCompare(a.startedAt))[0];
}

/** The totals of a prefetch job on one line: its state, nodes done, bytes from peers and from the registry, the image's size. */
export function prefetchTotalsLine(job: PrefetchJobView): string {
  const done = job.nodes.filter((n) => n.state === "done").length;
  const peers = job.nodes.reduce((sum, n) => sum + n.bytesFromPeers, 0);
  const registry = job.nodes.reduce((sum, n) => sum + n.bytesFromRegistry, 0);
  const size = job.sizeBytes > 0 ? ` (image ${bytesText(job.sizeBytes)})` : "";
  return `prefetch ${job.state}: ${done} of ${job.nodes.length} nodes done, ${bytesText(peers)} from peers, ${bytesText(registry)} from the registry${size}`;
}

/** The first line of a frame: "web: 2 of 3 tasks running", and how it stands. */
export function headLine(serviceName: string, c: Convergence): string {
  const counts = `${c.running} of ${c.desired} ${c.desired === 1 ? "task" : "tasks"} running`;
  const how = c.kind === "converged" ? ": converged" : c.kind === "failed" ? ": failed" : c.updating ? ", update in progress" : "";
  return `${shown(serviceName)}: ${counts}${how}`;
}

export const PROGRESS_HEADERS = ["TASK", "NODE", "STATE", "MESSAGE"];

/** One frame of the live display. */
export function renderServiceProgress(serviceName: string, c: Convergence, rows: readonly ProgressRow[], prefetch?: PrefetchJobView): string {
  const table = rows.length === 0 ? "  (no tasks yet)\n" : renderTable(PROGRESS_HEADERS, rows.map((r) => [r.name, r.node, r.state, r.message]));
  return `${headLine(serviceName, c)}\n${table}${prefetch === undefined ? "" : `${prefetchTotalsLine(prefetch)}\n`}`;
}

/**
 * What a non-terminal prints: one line per task whose state changed since `seen` (task ID → the
 * state last printed), which it updates. "web.2: preparing on w2", "web.3: pending: no node in zone
 * a …". The message of a PREPARING task (its progress) changes all the time, so it is left out.
 */
export function stateChangeLines(seen: Map<string, string>, rows: readonly ProgressRow[]): string[] {
  const lines: string[] = [];
  for (const row of rows) {
    if (seen.get(row.taskId) === row.state) continue;
    seen.set(row.taskId, row.state);
    const explain = row.state.startsWith("preparing") || row.state.startsWith("running") ? "" : row.message;
    lines.push(`${row.name}: ${row.state}${row.node !== "" ? ` on ${row.node}` : ""}${explain !== "" ? `: ${explain}` : ""}`);
  }
  return lines;
}

/** The sentence of a failed watch: which task failed and why, or why the update stopped. */
export function failureSentence(serviceName: string, c: Convergence, rows: readonly ProgressRow[]): string {
  const name = shown(serviceName);
  const see = `the service stays; see \`shoal service ps ${name}\``;
  const task = c.failedTask;
  if (task !== undefined) {
    const row = rows.find((r) => r.taskId === task.id);
    const label = row?.name ?? `${name}.${task.slot}`;
    const where = row !== undefined && row.node !== "" ? ` on ${row.node}` : "";
    const verb = stateOf(task) === TaskState.TASK_STATE_REJECTED ? "was rejected" : "failed";
    return `task ${label}${where} ${verb}: ${row?.message || "no message"}; ${see}`;
  }
  return `${name}: ${c.reason ?? "failed"}; ${see}`;
}
