// What one reconcile pass wants written for one service: units of writes that must commit together
// (a task shut down and its replacement created in one proposal, so a slot is never left empty or
// doubled), the service object's own update, and when to look again.
import { Task, type Service } from "../../proto/shoal/v1/objects.js";

export interface WriteUnit {
  creates: Task[];
  /** Modified copies carrying the version they were read at (compare-and-set). */
  updates: Task[];
  removes: Task[];
  /** The last unit of a `service rm`: delete the service itself. */
  removeServiceId?: string;
}

export interface ServicePlan {
  units: WriteUnit[];
  /** The service with a new update_status (and, for a rollback, its previous spec). */
  service?: Service;
  /** Some task needs the image digest, which is not known yet: resolve it and plan again. */
  needsImage: boolean;
  /** Earliest time at which planning again may give something new (restart windows, update delays). */
  wakeAtMs?: number;
}

export function emptyPlan(): ServicePlan {
  return { units: [], needsImage: false };
}

export function unitSize(unit: WriteUnit): number {
  return unit.creates.length + unit.updates.length + unit.removes.length + (unit.removeServiceId !== undefined ? 1 : 0);
}

export function wakeAt(plan: ServicePlan, ms: number): void {
  if (plan.wakeAtMs === undefined || ms < plan.wakeAtMs) plan.wakeAtMs = ms;
}

/** Bytes the unit adds to a proposal (its tasks' encodings plus framing), for the proposal budget. */
export function unitBytes(unit: WriteUnit): number {
  let bytes = 64;
  for (const t of unit.creates) bytes += Task.encode(t).finish().length + 16;
  for (const t of unit.updates) bytes += Task.encode(t).finish().length + 16;
  bytes += unit.removes.length * 48;
  return bytes;
}
