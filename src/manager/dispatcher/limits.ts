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

