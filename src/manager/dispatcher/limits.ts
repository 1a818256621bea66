// Bounds on what a node reports to the dispatcher: every string it sends may end up in the replicated
// store, in every snapshot and in `node inspect`, so it is checked where it enters the manager and an
// over-long one is refused (not cut: a cut string would be silently wrong). Lengths are UTF-8 bytes.
import { ShoalError } from "../../base/errors.js";
import type { NodeDescription } from "../../proto/shoal/v1/objects.js";
import type { TaskStatusUpdate } from "../../proto/shoal/v1/dispatcher.js";

/** NodeDescription.hostname / platform / engine_version. */
export const MAX_NODE_DESCRIPTION_FIELD_BYTES = 256;
/** TaskStatus.message / err (NodeStatus.message is written by the manager itself, never by a node). */
export const MAX_STATUS_MESSAGE_BYTES = 1024;
/** Task status updates in one UpdateTaskStatus call. */
export const MAX_TASK_STATUS_UPDATES = 256;

function checkBytes(value: string, maxBytes: number, field: string): void {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > maxBytes) {
    throw new ShoalError("INVALID_ARGUMENT", `${field} is ${bytes} bytes, more than the ${maxBytes} allowed; shorten it`);
  }
}

export function checkNodeDescription(description: NodeDescription | undefined): void {
  if (description === undefined) return;
  checkBytes(description.hostname, MAX_NODE_DESCRIPTION_FIELD_BYTES, "description.hostname");
  checkBytes(description.platform, MAX_NODE_DESCRIPTION_FIELD_BYTES, "description.platform");
  checkBytes(description.engineVersion, MAX_NODE_DESCRIPTION_FIELD_BYTES, "description.engineVersion");
}

export function checkTaskStatusUpdates(updates: readonly TaskStatusUpdate[]): void {
  if (updates.length > MAX_TASK_STATUS_UPDATES) {
    throw new ShoalError("INVALID_ARGUMENT", `${updates.length} task status updates in one call, more than ${MAX_TASK_STATUS_UPDATES}; send them in batches`);
  }
  for (const [i, update] of updates.entries()) {
    if (update.status === undefined) continue;
    checkBytes(update.status.message, MAX_STATUS_MESSAGE_BYTES, `updates[${i}].status.message`);
    checkBytes(update.status.err, MAX_STATUS_MESSAGE_BYTES, `updates[${i}].status.err`);
  }
}

