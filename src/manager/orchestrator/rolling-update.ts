// The rolling update (Swarm's): when the spec changes, tasks that no longer match it are replaced
// `parallelism` at a time; the next batch starts `delay` after the previous one is RUNNING; a new task
// that fails within `monitor` of starting counts as a failure, and failures beyond
// `max_failure_ratio` trigger the failure action: pause (PAUSED), rollback (spec <- previous_spec,
// ROLLBACK_STARTED … ROLLBACK_COMPLETED) or continue. A rollback is rolled out the same way, with the
// rollback config. update_status.spec_version names the spec version an update rolls out, so a new
// spec change starts a new update, also out of PAUSED.
import {
  TaskState,
  UpdateFailureAction,
  UpdateState,
  type Service,
  type Task,
  type UpdateConfig,
  type UpdateStatus,
} from "../../proto/shoal/v1/objects.js";
import { isTerminalState } from "../../state/index.js";
import { wakeAt, type ServicePlan } from "./plan.js";
import type { ReconcileInput } from "./reconcile.js";
import type { SlotKey } from "./task-template.js";

export const DEFAULT_MONITOR_MS = 5000;

type Make = (where: { slot: number; nodeId: string }, restartCount: number, startAfterMs?: number) => Task | undefined;

function isRollback(state: UpdateState): boolean {
  return state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED || state === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED || state === UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED;
}

export function planRollingUpdate(
  input: ReconcileInput,
  plan: ServicePlan,
  slots: Map<SlotKey, Task[]>,
  dirtyKeys: SlotKey[],
  make: Make,
  dirty: (t: Task) => boolean,
): void {
  const { service, nowMs } = input;
  const spec = service.spec!;
  const current = service.updateStatus;
  const ours = current !== undefined && current.specVersion === service.specVersion;
  let status: UpdateStatus | undefined = ours ? current : undefined;
  if (status === undefined) {
    if (dirtyKeys.length === 0) return; // nothing to roll out (a scale, or a new service)
    status = { state: UpdateState.UPDATE_STATE_UPDATING, message: "update in progress", startedAt: new Date(nowMs), completedAt: undefined, specVersion: service.specVersion };
  }
  const state = status.state;
  if (state !== UpdateState.UPDATE_STATE_UPDATING && state !== UpdateState.UPDATE_STATE_ROLLBACK_STARTED) {
    if (status !== current) setStatus(plan, service, status);
    return; // paused or completed for this spec version
  }
  const rollback = isRollback(state);
  const config: UpdateConfig | undefined = rollback ? spec.rollbackConfig : spec.updateConfig;
  const parallelism = config?.parallelism || 1;
  const delayMs = Number(config?.delayMs ?? 0n);
  const monitorMs = Number(config?.monitorMs ?? 0n) || DEFAULT_MONITOR_MS;
  const startedMs = status.startedAt?.getTime() ?? nowMs;

  // The tasks this update made: those of the spec version it rolls out (every spec change, a
  // rollback's included, bumps the version). Not "created since it started": a task's creation time
  // is its proposal's timestamp, taken before the pass that made it read the clock for startedAt,
  // so the update's first task could look older than the update and the next batch went early.
  const fresh: Task[] = [];
  for (const list of slots.values()) for (const t of list) if (!dirty(t) && t.specVersion === service.specVersion) fresh.push(t);
  // ... and those this pass makes (a restart of an ended task): they have yet to start.
  for (const unit of plan.units) for (const t of unit.creates) if (!dirty(t)) fresh.push(t);
  const failures = fresh.filter((t) => failedInMonitor(t, input, monitorMs));
  const ratio = config?.maxFailureRatio ?? 0;
  if (failures.length > 0 && failures.length > ratio * fresh.length && config?.failureAction !== UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE) {
    const failed = failures[0]!;
    const why = `task ${failed.id} (slot ${failed.slot || failed.nodeId}) failed: ${failed.status?.message || failed.status?.err || "no message"}`;
    const wantsRollback = config?.failureAction === UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK;
    if (wantsRollback && !rollback && service.previousSpec !== undefined) {
      // Roll back: the store bumps spec_version by one for the spec change, so the rollback's status
      // names that version. Nothing else is written in this pass (the plan was made for the bad spec).
      plan.units = [];
      plan.service = {
        ...service,
        spec: service.previousSpec,
        updateStatus: {
          state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED,
          message: `update rolled back: ${why}`,
          startedAt: new Date(nowMs),
          completedAt: undefined,
          specVersion: service.specVersion + 1n,
        },
      };
      return;
    }
    const reason = wantsRollback && !rollback ? `; there is no previous spec to roll back to` : "";
    setStatus(plan, service, {
      ...status,
      state: rollback ? UpdateState.UPDATE_STATE_ROLLBACK_PAUSED : UpdateState.UPDATE_STATE_PAUSED,
      message: `${rollback ? "rollback" : "update"} paused: ${why}${reason}`,
    });
    return;
  }

  const live = fresh.filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING && !isTerminalState(t.status?.state ?? TaskState.TASK_STATE_NEW));
  const starting = live.filter((t) => (t.status?.state ?? TaskState.TASK_STATE_NEW) < TaskState.TASK_STATE_RUNNING);
  const runningSince = live.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).map((t) => input.runningSince(t));

  if (dirtyKeys.length === 0) {
    if (starting.length > 0) return setIfNew(plan, service, status, current);
    const settledAt = Math.max(startedMs, ...runningSince.map((ms) => ms + monitorMs));
    if (nowMs < settledAt) {
      wakeAt(plan, settledAt);
      return setIfNew(plan, service, status, current);
    }
    setStatus(plan, service, {
      ...status,
      state: rollback ? UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED : UpdateState.UPDATE_STATE_COMPLETED,
      message: rollback ? "rollback completed" : "update completed",
      completedAt: new Date(nowMs),
    });
    return;
  }

  // A batch at a time: the next one starts `delay` after the previous batch is all RUNNING.
  if (starting.length > 0) return setIfNew(plan, service, status, current);
  if (runningSince.length > 0) {
    const allowedAt = Math.max(...runningSince) + delayMs;
    if (nowMs < allowedAt) {
      wakeAt(plan, allowedAt);
      return setIfNew(plan, service, status, current);
    }
  }
  const batch = [...dirtyKeys].sort(bySlotKey).slice(0, parallelism);
  for (const key of batch) {
    const slotTasks = slots.get(key)!;
    const old = slotTasks.find((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING)!;
    const replacement = make({ slot: old.slot, nodeId: old.slot === 0 ? old.nodeId : "" }, 0);
    if (replacement === undefined) break;
    plan.units.push({ creates: [replacement], updates: [{ ...old, desiredState: TaskState.TASK_STATE_SHUTDOWN }], removes: [] });
  }
  setIfNew(plan, service, status, current);
}

/** A task of this update that failed (or was rejected) within `monitor` of starting. */
function failedInMonitor(task: Task, input: ReconcileInput, monitorMs: number): boolean {
  const state = task.status?.state;
  if (state !== TaskState.TASK_STATE_FAILED && state !== TaskState.TASK_STATE_REJECTED) return false;
  const endedMs = task.status?.timestamp?.getTime() ?? input.nowMs;
  // Never seen RUNNING by this leader: measure from its creation (it may have failed while starting).
  const startedMs = input.seenRunningAt(task) ?? task.meta?.createdAt?.getTime() ?? input.nowMs;
  return endedMs - startedMs < monitorMs;
}

function bySlotKey(a: SlotKey, b: SlotKey): number {
  const na = Number(a.slice(5));
  const nb = Number(b.slice(5));
  if (a.startsWith("slot:") && b.startsWith("slot:")) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

function setStatus(plan: ServicePlan, service: Service, status: UpdateStatus): void {
  plan.service = { ...service, updateStatus: status };
}

function setIfNew(plan: ServicePlan, service: Service, status: UpdateStatus, current: UpdateStatus | undefined): void {
  if (status !== current) setStatus(plan, service, status);
}
