// Assignments streams (DESIGN rule 8): each agent session has at most one; it starts with the node's
// COMPLETE set and then carries numbered INCREMENTAL changes (applies_to = the previous results_in)
// computed by diffing what the node may hold now (assignment-set.ts) against what the stream has
// sent, after every applied store change that touches the node, its tasks or their secrets.
// A secret's data is read from the store only here, right before it is written to the stream.
import type { Logger } from "pino";
import type * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../base/errors.js";
import {
  AssignmentAction,
  AssignmentChange,
  AssignmentsMessage_Type,
  type AssignmentsMessage,
  type AssignmentsRequest,
} from "../../proto/shoal/v1/dispatcher.js";
import { PrefetchOrder } from "../../proto/shoal/v1/dispatcher.js";
import { Task, type Node, type Secret } from "../../proto/shoal/v1/objects.js";
import { effectiveZone, nodeZone, type ObjectStore, type StoreChange } from "../../state/index.js";
import { handlerError } from "../handlers.js";
import type { BoardEntry, PrefetchOrderSource } from "../prefetch/order-board.js";
import { computeAssignmentSet, secretFingerprint, taskFingerprint, type AssignmentRefusal, type AssignmentStoreView } from "./assignment-set.js";
import { endStream } from "./end-stream.js";
import type { Session } from "./sessions.js";

/**
 * Bytes of changes in one message. Clients accept 4 MiB by default; a set larger than this goes out
 * as several messages (the first one COMPLETE), secrets before the tasks that use them.
 */
export const MAX_ASSIGNMENTS_MESSAGE_BYTES = 2 * 1024 * 1024;
/**
 * Bytes written to one stream that the connection has not taken yet. An agent that reads slower
 * than its assignments change is cut off (QUEUE_FULL) at its next change and starts over with a
 * COMPLETE set, instead of the leader buffering without bound (at most this plus one set per node).
 */
export const MAX_UNSENT_ASSIGNMENT_BYTES = 16 * 1024 * 1024;

export type AssignmentsCall = grpc.ServerWritableStream<AssignmentsRequest, AssignmentsMessage>;

interface AssignmentStream {
  readonly session: Session;
  readonly call: AssignmentsCall;
  sequence: number;
  /** "task/<id>", "secret/<id>" or "prefetch/<job id>" → fingerprint of the version sent. */
  readonly sent: Map<string, string>;
  /** Secrets the node's tasks reference (sent or not), so a change to one of them re-syncs the node. */
  wantedSecrets: Set<string>;
  /** Refusals already logged (logged again only after they stopped and recur). */
  loggedRefusals: Set<string>;
  /** The same for prefetch orders refused. */
  loggedPrefetchRefusals: Set<string>;
  unsentBytes: number;
  ended: boolean;
}

export interface AssignmentStreamsDeps {
  store: AssignmentStoreView & Pick<ObjectStore, "getSecretData">;
  logger: Logger;
  /** The leader's prefetch orders (absent: this dispatcher sends none). */
  prefetch?: PrefetchOrderSource;
}

const taskKey = (id: string): string => `task/${id}`;
const secretKey = (id: string): string => `secret/${id}`;
const prefetchKey = (jobId: string): string => `prefetch/${jobId}`;

export class AssignmentStreams {
  private readonly byNode = new Map<string, AssignmentStream>();
  private readonly dirty = new Set<string>();
  private flushScheduled = false;

  constructor(private readonly deps: AssignmentStreamsDeps) {
    deps.prefetch?.onChange((nodeIds) => this.touch(nodeIds));
  }

  get size(): number {
    return this.byNode.size;
  }

  /** Opens the session's stream (replacing an older one of the same session) and sends the COMPLETE set. */
  open(session: Session, call: AssignmentsCall): void {
    const previous = this.byNode.get(session.nodeId);
    if (previous !== undefined) this.end(previous, new ShoalError("FAILED_PRECONDITION", "a newer assignments stream of this session replaces this one"));
    const stream: AssignmentStream = { session, call, sequence: 0, sent: new Map(), wantedSecrets: new Set(), loggedRefusals: new Set(), loggedPrefetchRefusals: new Set(), unsentBytes: 0, ended: false };
    this.byNode.set(session.nodeId, stream);
    const forget = (): void => {
      stream.ended = true;
      if (this.byNode.get(session.nodeId) === stream) this.byNode.delete(session.nodeId);
    };
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("error", forget);
    this.sync(stream, true);
  }

  /** Ends the stream bound to `session` (the session ended or was replaced). */
  endSession(session: Session, why: ShoalError): void {
    const stream = this.byNode.get(session.nodeId);
    if (stream !== undefined && stream.session === session) this.end(stream, why);
  }

  endAll(why: ShoalError): void {
    for (const stream of [...this.byNode.values()]) this.end(stream, why);
  }

  /** Marks the nodes an applied proposal touched; they are re-synced once the current apply returns. */
  applied(changes: readonly StoreChange[] | "reset"): void {
    if (this.byNode.size === 0) return;
    if (changes === "reset") {
      for (const nodeId of this.byNode.keys()) this.dirty.add(nodeId);
    } else {
      for (const change of changes) this.markChange(change);
    }
    this.scheduleFlush();
  }

  /** Re-syncs these nodes once the current turn of the event loop is done (their prefetch orders changed). */
  touch(nodeIds: readonly string[]): void {
    for (const nodeId of nodeIds) if (this.byNode.has(nodeId)) this.dirty.add(nodeId);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.dirty.size > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      // One sync per node for all the proposals applied in this turn of the event loop.
      queueMicrotask(() => this.flush());
    }
  }

  private markChange(change: StoreChange): void {
    switch (change.table) {
      case "tasks": {
        const task = change.object as Task;
        const old = change.oldObject as Task | undefined;
        if (this.byNode.has(task.nodeId)) this.dirty.add(task.nodeId);
        if (old !== undefined && old.nodeId !== task.nodeId && this.byNode.has(old.nodeId)) this.dirty.add(old.nodeId);
        break;
      }
      case "nodes": {
        const node = change.object as Node;
        if (this.byNode.has(node.id)) this.dirty.add(node.id);
        break;
      }
      case "secrets": {
        const id = (change.object as Secret).id;
        for (const [nodeId, stream] of this.byNode) if (stream.wantedSecrets.has(id) || stream.sent.has(secretKey(id))) this.dirty.add(nodeId);
        break;
      }
      default:
        break;
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const nodes = [...this.dirty];
    this.dirty.clear();
    for (const nodeId of nodes) {
      const stream = this.byNode.get(nodeId);
      if (stream !== undefined && !stream.ended) this.sync(stream, false);
    }
  }

  private end(stream: AssignmentStream, why: ShoalError): void {
    stream.ended = true;
    if (this.byNode.get(stream.session.nodeId) === stream) this.byNode.delete(stream.session.nodeId);
    endStream(stream.call, handlerError(why));
  }

  /** Diffs the node's set against what the stream has sent and writes the difference (all of it for COMPLETE). */
  private sync(stream: AssignmentStream, complete: boolean): void {
    const { session } = stream;
    let set;
    try {
      set = computeAssignmentSet(this.deps.store, session.nodeId, session.certZone);
    } catch (err) {
      this.deps.logger.error({ err: String(err), nodeId: session.nodeId }, "cannot compute a node's assignments; ending its stream");
      this.end(stream, new ShoalError("INTERNAL", "the manager could not compute this node's assignments; reopen the stream"));
      return;
    }
    this.logRefusals(stream, set.refusals);
    stream.wantedSecrets = new Set(set.secrets.keys());
    for (const task of set.tasks.values()) for (const ref of task.spec?.secrets ?? []) stream.wantedSecrets.add(ref.secretId);

    const secretUpdates: AssignmentChange[] = [];
    const prefetchUpdates: AssignmentChange[] = [];
    const taskUpdates: AssignmentChange[] = [];
    const taskRemoves: AssignmentChange[] = [];
    const secretRemoves: AssignmentChange[] = [];
    const next = new Map<string, string>();
    for (const secret of set.secrets.values()) {
      const fingerprint = secretFingerprint(secret);
      const key = secretKey(secret.id);
      if (!complete && stream.sent.get(key) === fingerprint) {
        next.set(key, fingerprint);
        continue;
      }
      const data = this.deps.store.getSecretData(secret.id);
      if (data === undefined) continue;
      next.set(key, fingerprint);
      secretUpdates.push({ action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE, assignment: { secret: { ...secret, spec: { ...secret.spec!, data } } } });
    }
    for (const entry of this.prefetchOrders(stream)) {
      const key = prefetchKey(entry.order.jobId);
      const fingerprint = String(entry.version);
      next.set(key, fingerprint);
      if (!complete && stream.sent.get(key) === fingerprint) continue;
      prefetchUpdates.push({ action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE, assignment: { prefetch: entry.order } });
    }
    for (const task of set.tasks.values()) {
      const fingerprint = taskFingerprint(task);
      const key = taskKey(task.id);
      next.set(key, fingerprint);
      if (!complete && stream.sent.get(key) === fingerprint) continue;
      taskUpdates.push({ action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE, assignment: { task } });
    }
    if (!complete) {
      for (const key of stream.sent.keys()) {
        if (next.has(key)) continue;
        const slash = key.indexOf("/");
        const kind = key.slice(0, slash) as "task" | "secret" | "prefetch";
        const id = key.slice(slash + 1);
        if (kind === "secret") secretRemoves.push(removal("secret", id));
        else taskRemoves.push(removal(kind, id));
      }
    }
    stream.sent.clear();
    for (const [k, v] of next) stream.sent.set(k, v);
    // A job's order before the tasks that wait for it; secrets before the tasks that use them.
    const changes = [...secretUpdates, ...prefetchUpdates, ...taskUpdates, ...taskRemoves, ...secretRemoves];
    if (!complete && changes.length === 0) return;
    this.write(stream, changes, complete);
  }

  private write(stream: AssignmentStream, changes: AssignmentChange[], complete: boolean): void {
    // The backlog left by earlier writes decides, not this set's size: a node whose set is large but
    // that reads promptly must never be cut off (it would reopen, get the same COMPLETE set, forever).
    if (stream.unsentBytes > MAX_UNSENT_ASSIGNMENT_BYTES) {
      this.deps.logger.warn({ nodeId: stream.session.nodeId, unsentBytes: stream.unsentBytes }, "an agent reads its assignments too slowly; ending its stream so it starts over with a complete set");
      this.end(stream, new ShoalError("QUEUE_FULL", "this node reads its assignments slower than they change; reopen the stream for a complete set"));
      return;
    }
    const chunks: { changes: AssignmentChange[]; bytes: number }[] = [{ changes: [], bytes: 0 }];
    for (const change of changes) {
      // Each change is a length-delimited field of the message: its bytes plus a few of framing.
      const size = AssignmentChange.encode(change).finish().length + 8;
      let last = chunks.at(-1)!;
      if (last.bytes + size > MAX_ASSIGNMENTS_MESSAGE_BYTES && last.changes.length > 0) {
        last = { changes: [], bytes: 0 };
        chunks.push(last);
      }
      last.changes.push(change);
      last.bytes += size;
    }
    for (const [i, chunk] of chunks.entries()) {
      const first = complete && i === 0;
      const appliesTo = first ? "" : String(stream.sequence);
      stream.sequence++;
      const message: AssignmentsMessage = {
        type: first ? AssignmentsMessage_Type.TYPE_COMPLETE : AssignmentsMessage_Type.TYPE_INCREMENTAL,
        appliesTo,
        resultsIn: String(stream.sequence),
        changes: chunk.changes,
      };
      stream.unsentBytes += chunk.bytes;
      stream.call.write(message, () => {
        stream.unsentBytes -= chunk.bytes;
      });
    }
  }

  /**
   * The node's prefetch orders that may go to it: the zone it was planned in must be the zone of its
   * certificate and of its node object now (rule 9). The planner never crosses a zone; a node
   * re-zoned since the plan, or a planning mistake, is refused here and logged as a security event.
   */
  private prefetchOrders(stream: AssignmentStream): BoardEntry[] {
    const entries = this.deps.prefetch?.ordersFor(stream.session.nodeId) ?? [];
    const logged = new Set<string>();
    const previous = stream.loggedPrefetchRefusals;
    stream.loggedPrefetchRefusals = logged;
    if (entries.length === 0) return [];
    const node = this.deps.store.getNode(stream.session.nodeId);
    const certZone = effectiveZone(stream.session.certZone);
    const storeZone = node === undefined ? undefined : nodeZone(node);
    return entries.filter((entry) => {
      if (entry.zone === certZone && entry.zone === storeZone) return true;
      const key = `prefetch/${entry.order.jobId}/${entry.zone}/${certZone}/${storeZone ?? ""}`;
      logged.add(key);
      if (!previous.has(key)) {
        this.deps.logger.warn(
          { event: "security", nodeId: stream.session.nodeId, sessionId: stream.session.id, certSerial: stream.session.serial, certZone, storeZone, jobId: entry.order.jobId, jobZone: entry.zone, reason: "zone-mismatch" },
          "dispatcher refused to send a prefetch order to a node of another zone",
        );
      }
      return false;
    });
  }

  private logRefusals(stream: AssignmentStream, refusals: AssignmentRefusal[]): void {
    const current = new Set<string>();
    const node = this.deps.store.getNode(stream.session.nodeId);
    for (const refusal of refusals) {
      const key = `${refusal.taskId}/${refusal.secretId ?? ""}/${refusal.reason}`;
      current.add(key);
      if (stream.loggedRefusals.has(key)) continue;
      // A security event: who, what and why, never a secret's data.
      this.deps.logger.warn(
        {
          event: "security",
          nodeId: stream.session.nodeId,
          sessionId: stream.session.id,
          certSerial: stream.session.serial,
          certZone: effectiveZone(stream.session.certZone),
          storeZone: node === undefined ? undefined : nodeZone(node),
          taskId: refusal.taskId,
          taskZone: effectiveZone(refusal.taskZone),
          ...(refusal.secretId !== undefined ? { secretId: refusal.secretId, secretName: refusal.secretName } : {}),
          reason: refusal.reason,
        },
        refusal.secretId !== undefined ? "dispatcher refused to send a secret to a node" : "dispatcher refused to send a task to a node",
      );
    }
    stream.loggedRefusals = current;
  }
}

function removal(kind: "task" | "secret" | "prefetch", id: string): AssignmentChange {
  const assignment = kind === "task" ? { task: emptyTask(id) } : kind === "secret" ? { secret: emptySecret(id) } : { prefetch: PrefetchOrder.fromPartial({ jobId: id }) };
  return { action: AssignmentAction.ASSIGNMENT_ACTION_REMOVE, assignment };
}

function emptyTask(id: string): Task {
  return Task.fromPartial({ id });
}

function emptySecret(id: string): Secret {
  return { id, meta: undefined, spec: undefined, sizeBytes: 0, dataMac: "" };
}
