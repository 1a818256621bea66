// What a service's task looks like: a new task made from the service's current spec, and whether an
// existing task still matches that spec (a task that does not is "dirty" and is replaced by the
// rolling update). Scaling or relabelling the service does not make tasks dirty.
import { newId } from "../../base/ids.js";
import { ContainerSpec, ServiceMode, TaskState, type Service, type Task } from "../../proto/shoal/v1/objects.js";
import { DEFAULT_ZONE, serviceZone } from "../../state/index.js";

/** A task's place in its service: a replica slot, or a node for a global service. */
export type SlotKey = string;

export function slotKeyOf(service: Service, task: Task): SlotKey {
  return service.spec!.mode === ServiceMode.SERVICE_MODE_GLOBAL ? `node:${task.nodeId}` : `slot:${task.slot}`;
}

/** The executor a task of this spec needs: an image needs an OCI runtime. */
export function executorFor(service: Service): string {
  return (service.spec!.container?.image ?? "") !== "" ? "runc" : "process";
}

/** The task's zone field: the service's effective zone, "" for the default zone. */
export function zoneFor(service: Service): string {
  const zone = serviceZone(service.spec!);
  return zone === DEFAULT_ZONE ? "" : zone;
}

function containerFingerprint(spec: ContainerSpec | undefined): string {
  const bytes = ContainerSpec.encode({ ...ContainerSpec.fromPartial(spec ?? {}), imageDigest: "" }).finish();
  return Buffer.from(bytes).toString("base64");
}

/** Everything of the spec that a task carries; tasks whose fingerprint differs are dirty. */
export function serviceFingerprint(service: Service): string {
  const spec = service.spec!;
  return [containerFingerprint(spec.container), zoneFor(service), executorFor(service), ...spec.constraints].join("\u0000");
}

export function taskFingerprint(task: Task): string {
  return [containerFingerprint(task.spec), task.zone, task.executor, ...task.constraints].join("\u0000");
}

export interface NewTaskOptions {
  slot: number;
  /** Global services: the node the task is for. */
  nodeId: string;
  imageDigest: string;
  nowMs: number;
  startAfterMs?: number;
  restartCount: number;
  /** A task that is born REJECTED (its image could not be resolved), with the reason. */
  rejected?: string;
  /** The new task's ID (default: a random one; the simulator draws them from its seed). */
  id?: string;
}

export function newTask(service: Service, o: NewTaskOptions): Task {
  const spec = service.spec!;
  const container = ContainerSpec.fromPartial(spec.container ?? {});
  container.imageDigest = container.image === "" ? "" : o.imageDigest;
  const now = new Date(o.nowMs);
  return {
    id: o.id ?? newId(),
    meta: undefined,
    serviceId: service.id,
    serviceName: spec.name,
    slot: o.slot,
    nodeId: o.nodeId,
    desiredState: TaskState.TASK_STATE_RUNNING,
    status:
      o.rejected !== undefined
        ? { state: TaskState.TASK_STATE_REJECTED, message: o.rejected, err: o.rejected, timestamp: now, exitCode: 0, pid: 0 }
        : { state: TaskState.TASK_STATE_PENDING, message: "waiting for a node", err: "", timestamp: now, exitCode: 0, pid: 0 },
    spec: container,
    zone: zoneFor(service),
    specVersion: service.specVersion,
    executor: executorFor(service),
    startAfter: o.startAfterMs !== undefined && o.startAfterMs > o.nowMs ? new Date(o.startAfterMs) : undefined,
    constraints: [...spec.constraints],
    restartCount: o.restartCount,
    restartDeclined: false,
  };
}
