// The node's assignments as the managers pushed them (DESIGN.md §3 rule 8): a COMPLETE set replaces
// everything, an INCREMENTAL message applies only on top of the set it names (`applies_to` equal to
// the last `results_in`); anything else is a gap, and the caller reopens the stream for a full set.
// Secrets with their data live here, in memory only, and so do prefetch orders (a seed's carries
// the header it pulls with).
import { AssignmentAction, AssignmentsMessage_Type, type AssignmentsMessage, type PrefetchOrder } from "../proto/shoal/v1/dispatcher.js";
import type { Secret, Task } from "../proto/shoal/v1/objects.js";

export type ApplyOutcome = { applied: true } | { applied: false; reason: string };

export class AssignmentSet {
  readonly tasks = new Map<string, Task>();
  readonly secrets = new Map<string, Secret>();
  /** Prefetch orders by job ID. */
  readonly prefetch = new Map<string, PrefetchOrder>();
  /** `results_in` of the last message applied on the current stream; undefined before its COMPLETE. */
  private resultsIn: string | undefined;
  /** Whether any COMPLETE set arrived since the agent started. */
  private complete = false;

  get hasCompleteSet(): boolean {
    return this.complete;
  }

  get lastResultsIn(): string | undefined {
    return this.resultsIn;
  }

  /** A new stream starts: the next message must be a COMPLETE set (tasks are kept until it comes). */
  streamOpened(): void {
    this.resultsIn = undefined;
  }

  apply(message: AssignmentsMessage): ApplyOutcome {
    if (message.type === AssignmentsMessage_Type.TYPE_COMPLETE) {
      this.tasks.clear();
      this.secrets.clear();
      this.prefetch.clear();
      this.applyChanges(message);
      this.resultsIn = message.resultsIn;
      this.complete = true;
      return { applied: true };
    }
    if (message.type !== AssignmentsMessage_Type.TYPE_INCREMENTAL) return { applied: false, reason: `unknown assignments message type ${String(message.type)}` };
    if (this.resultsIn === undefined) return { applied: false, reason: "an incremental change arrived before the complete set" };
    if (message.appliesTo !== this.resultsIn) {
      return { applied: false, reason: `gap in the assignments: the change applies to ${message.appliesTo}, the last one received was ${this.resultsIn}` };
    }
    this.applyChanges(message);
    this.resultsIn = message.resultsIn;
    return { applied: true };
  }

  private applyChanges(message: AssignmentsMessage): void {
    for (const change of message.changes) {
      const task = change.assignment?.task;
      const secret = change.assignment?.secret;
      const prefetch = change.assignment?.prefetch;
      const remove = change.action === AssignmentAction.ASSIGNMENT_ACTION_REMOVE;
      if (task !== undefined) {
        if (remove) this.tasks.delete(task.id);
        else this.tasks.set(task.id, task);
      } else if (secret !== undefined) {
        if (remove) this.secrets.delete(secret.id);
        else this.secrets.set(secret.id, secret);
      } else if (prefetch !== undefined) {
        if (remove) this.prefetch.delete(prefetch.jobId);
        else this.prefetch.set(prefetch.jobId, prefetch);
      }
    }
  }
}
