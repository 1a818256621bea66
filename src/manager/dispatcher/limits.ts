// Bounds on what a node reports to the dispatcher: every string it sends may end up in the replicated
// store, in every snapshot and in `node inspect`, so it is checked where it enters the manager and an
// over-long one is refused (not cut: a cut string would be silently wrong). Lengths are UTF-8 bytes.
// Control and bidi-control characters are refused too (base/text.ts): a hostname with ANSI escapes
// and a newline would otherwise clear an operator's screen and forge rows in `node ls`.
import { ShoalError } from "../../base/errors.js";
import { checkNoControlChars } from "../../base/text.js";
import type { NodeDescription } from "../../proto/shoal/v1/objects.js";
import type { TaskStatusUpdate } from "../../proto/shoal/v1/dispatcher.js";

/** NodeDescription.hostname / platform / engine_version. */
export const MAX_NODE_DESCRIPTION_FIELD_BYTES = 256;
/** TaskStatus.message / err (NodeStatus.message is written by the manager itself, never by a node). */
export const MAX_STATUS_MESSAGE_BYTES = 1024;
/** Task status updates in one UpdateTaskStatus call. */
export const MAX_TASK_STATUS_UPDATES = 256;

/** NodeDescription.executors: how many, and the form of a name ("runc", "process"). */
export const MAX_EXECUTORS = 8;
export const EXECUTOR_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;
/** NodeDescription.engine_labels (untrusted, shown in `node inspect`, usable as engine.labels.K). */
export const MAX_ENGINE_LABELS = 64;
export const MAX_ENGINE_LABEL_KEY_BYTES = 128;
export const MAX_ENGINE_LABEL_VALUE_BYTES = 256;

/** NodeStatus.addr as a session reports it (HOST:PORT, or empty). */
export const MAX_REPORTED_ADDR_BYTES = 300;

/** Bounds a node-reported string and refuses control characters in it. */
export function checkReportedText(value: string, maxBytes: number, field: string): void {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > maxBytes) {
    throw new ShoalError("INVALID_ARGUMENT", `${field} is ${bytes} bytes, more than the ${maxBytes} allowed; shorten it`);
  }
  checkNoControlChars(value, field);
}

export function checkSessionAddr(addr: string): void {
  checkReportedText(addr, MAX_REPORTED_ADDR_BYTES, "addr");
}

export function checkNodeDescription(description: NodeDescription | undefined): void {
  if (description === undefined) return;
  checkReportedText(description.hostname, MAX_NODE_DESCRIPTION_FIELD_BYTES, "description.hostname");
  checkReportedText(description.platform, MAX_NODE_DESCRIPTION_FIELD_BYTES, "description.platform");
  checkReportedText(description.engineVersion, MAX_NODE_DESCRIPTION_FIELD_BYTES, "description.engineVersion");
  if (description.executors.length > MAX_EXECUTORS) {
    throw new ShoalError("INVALID_ARGUMENT", `description.executors has ${description.executors.length} entries, more than ${MAX_EXECUTORS}`);
  }
  for (const [i, name] of description.executors.entries()) {
    if (!EXECUTOR_NAME_PATTERN.test(name)) {
      throw new ShoalError("INVALID_ARGUMENT", `description.executors[${i}] must be a name of [a-z0-9-] starting with a letter, at most 32 characters (e.g. runc, process)`);
    }
  }
  const labels = Object.entries(description.engineLabels);
  if (labels.length > MAX_ENGINE_LABELS) {
    throw new ShoalError("INVALID_ARGUMENT", `description.engineLabels has ${labels.length} labels, more than ${MAX_ENGINE_LABELS}`);
  }
  for (const [key, value] of labels) {
    if (key === "") throw new ShoalError("INVALID_ARGUMENT", "description.engineLabels has a label with an empty key");
    checkReportedText(key, MAX_ENGINE_LABEL_KEY_BYTES, "description.engineLabels key");
    checkReportedText(value, MAX_ENGINE_LABEL_VALUE_BYTES, `description.engineLabels value`);
  }
  const r = description.resources;
  if (r !== undefined && (r.nanoCpus < 0n || r.memoryBytes < 0n || r.pids < 0n)) {
    throw new ShoalError("INVALID_ARGUMENT", "description.resources must not be negative");
  }
}

export function checkTaskStatusUpdates(updates: readonly TaskStatusUpdate[]): void {
  if (updates.length > MAX_TASK_STATUS_UPDATES) {
    throw new ShoalError("INVALID_ARGUMENT", `${updates.length} task status updates in one call, more than ${MAX_TASK_STATUS_UPDATES}; send them in batches`);
  }
  for (const [i, update] of updates.entries()) {
    checkNoControlChars(update.taskId, `updates[${i}].taskId`);
    if (update.status === undefined) continue;
    checkReportedText(update.status.message, MAX_STATUS_MESSAGE_BYTES, `updates[${i}].status.message`);
    checkReportedText(update.status.err, MAX_STATUS_MESSAGE_BYTES, `updates[${i}].status.err`);
  }
}

