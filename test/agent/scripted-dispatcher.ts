// A dispatcher the test scripts, served over real mutual TLS (test PKI from test/transport): it
// serves Session, Heartbeat, Assignments, UpdateTaskStatus and ReportPrefetch for the real Agent,
// records what the agent sent (session descriptions, status updates, prefetch reports, assignment
// streams opened), and lets the test push assignment messages (tasks, secrets, prefetch orders),
// inject a gap, or refuse status calls. Several share one `ScriptedStore`
// so that a failover keeps the node's tasks. Used where the test must control the stream itself
// (gaps, refusals, failover); the dispatcher's own tests cover the real one.
import * as grpc from "@grpc/grpc-js";
import {
  AssignmentAction,
  AssignmentsMessage_Type,
  DispatcherService,
  type AssignmentChange,
  type AssignmentsMessage,
  type PrefetchOrder,
  type ReportPrefetchRequest,
  type SessionMessage,
  type SessionRequest,
  type TaskStatusUpdate,
  type UpdateTaskStatusRequest,
} from "../../src/proto/shoal/v1/dispatcher.js";
import { TaskState, type NodeDescription, type Secret, type Task } from "../../src/proto/shoal/v1/objects.js";
import type { SecureServer } from "../../src/transport/server.js";
import { pkiServer, type Pki } from "../transport/fixtures.js";

export class ScriptedStore {
  readonly tasks = new Map<string, Task>();
  readonly secrets = new Map<string, Secret>();
  /** Prefetch orders by job ID; a report for a job not here is refused NOT_FOUND, as the real dispatcher does. */
  readonly prefetch = new Map<string, PrefetchOrder>();
  /** Every ReportPrefetch the agent sent and a dispatcher took. */
  readonly prefetchReports: { request: ReportPrefetchRequest; via: string }[] = [];
  /** Every update the agent sent, in arrival order, on any dispatcher. */
  readonly updates: { update: TaskStatusUpdate; atMs: number; via: string }[] = [];

  states(taskId: string): string[] {
    return this.updates.filter((u) => u.update.taskId === taskId).map((u) => TaskState[u.update.status!.state]!.replace("TASK_STATE_", ""));
  }

  status(taskId: string, state: TaskState): TaskStatusUpdate["status"] | undefined {
    return this.updates.find((u) => u.update.taskId === taskId && u.update.status?.state === state)?.update.status;
  }
}

export class ScriptedDispatcher {
  readonly descriptions: (NodeDescription | undefined)[] = [];
  assignmentStreamsOpened = 0;
  statusCalls = 0;
  /** Refuse this many UpdateTaskStatus calls with UNAVAILABLE before taking them. */
  refuseStatusCalls = 0;
  /** SessionMessage.prefetch of the sessions this dispatcher opens. */
  sessionPrefetch = false;
  private stream: grpc.ServerWritableStream<unknown, AssignmentsMessage> | undefined;
  private readonly sessions = new Set<grpc.ServerWritableStream<SessionRequest, SessionMessage>>();
  private seq = 0;
  private constructor(
    readonly name: string,
    readonly server: SecureServer,
    readonly store: ScriptedStore,
    readonly addr: string,
  ) {}

  static async start(pki: Pki, store: ScriptedStore, name: string): Promise<ScriptedDispatcher> {
    const server = pkiServer(pki);
    const holder: { d?: ScriptedDispatcher } = {};
    server.addService(DispatcherService, {
      session: (call: grpc.ServerWritableStream<SessionRequest, SessionMessage>) => holder.d!.onSession(call),
      heartbeat: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { periodMs: 200 }),
      assignments: (call: grpc.ServerWritableStream<unknown, AssignmentsMessage>) => holder.d!.onAssignments(call),
      updateTaskStatus: (call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => holder.d!.onStatus(call, cb),
      reportPrefetch: (call: grpc.ServerUnaryCall<ReportPrefetchRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => holder.d!.onPrefetchReport(call, cb),
    });
    const port = await server.listen("127.0.0.1:0", "open");
    holder.d = new ScriptedDispatcher(name, server, store, `127.0.0.1:${port}`);
    return holder.d;
  }

  private onSession(call: grpc.ServerWritableStream<SessionRequest, SessionMessage>): void {
    this.descriptions.push(call.request.description);
    this.sessions.add(call);
    call.on("cancelled", () => this.sessions.delete(call));
    call.write({ sessionId: `${this.name}-session`, managers: [], revokedNodeIds: [], revokedSerials: [], node: undefined, prefetch: this.sessionPrefetch, rootCaBundle: Buffer.alloc(0) });
  }

  private onAssignments(call: grpc.ServerWritableStream<unknown, AssignmentsMessage>): void {
    this.assignmentStreamsOpened++;
    this.stream = call;
    call.on("cancelled", () => {
      if (this.stream === call) this.stream = undefined;
    });
    this.seq++;
    call.write({ type: AssignmentsMessage_Type.TYPE_COMPLETE, appliesTo: "", resultsIn: String(this.seq), changes: this.allChanges() });
  }

  private onStatus(call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, unknown>, cb: grpc.sendUnaryData<unknown>): void {
    this.statusCalls++;
    if (this.refuseStatusCalls > 0) {
      this.refuseStatusCalls--;
      cb({ code: grpc.status.UNAVAILABLE, details: "scripted refusal" });
      return;
    }
    for (const update of call.request.updates) {
      this.store.updates.push({ update, atMs: Date.now(), via: this.name });
      const task = this.store.tasks.get(update.taskId);
      if (task !== undefined) this.store.tasks.set(task.id, { ...task, status: update.status });
    }
    cb(null, { refused: [] });
  }

  private onPrefetchReport(call: grpc.ServerUnaryCall<ReportPrefetchRequest, unknown>, cb: grpc.sendUnaryData<unknown>): void {
    if (!this.store.prefetch.has(call.request.jobId)) {
      cb({ code: grpc.status.NOT_FOUND, details: `no order of prefetch job ${call.request.jobId}` });
      return;
    }
    this.store.prefetchReports.push({ request: call.request, via: this.name });
    cb(null, {});
  }

  private allChanges(): AssignmentChange[] {
    return [
      ...[...this.store.prefetch.values()].map((prefetch) => ({ assignment: { prefetch }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
      ...[...this.store.tasks.values()].map((task) => ({ assignment: { task }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
      ...[...this.store.secrets.values()].map((secret) => ({ assignment: { secret }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
    ];
  }

  get hasStream(): boolean {
    return this.stream !== undefined;
  }

  /** Puts (or replaces) tasks and secrets in the store and sends them as one INCREMENTAL. */
  update(tasks: Task[], secrets: Secret[] = []): void {
    for (const t of tasks) this.store.tasks.set(t.id, t);
    for (const s of secrets) this.store.secrets.set(s.id, s);
    this.incremental([
      ...tasks.map((task) => ({ assignment: { task }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
      ...secrets.map((secret) => ({ assignment: { secret }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
    ]);
  }

  /** Puts (or replaces) prefetch orders in the store and sends them as one INCREMENTAL. */
  order(orders: PrefetchOrder[]): void {
    for (const o of orders) this.store.prefetch.set(o.jobId, o);
    this.incremental(orders.map((prefetch) => ({ assignment: { prefetch }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })));
  }

  removeSecret(secret: Secret): void {
    this.store.secrets.delete(secret.id);
    this.incremental([{ assignment: { secret: { ...secret, spec: undefined } }, action: AssignmentAction.ASSIGNMENT_ACTION_REMOVE }]);
  }

  incremental(changes: AssignmentChange[], appliesTo?: string): void {
    if (this.stream === undefined) throw new Error(`${this.name}: no assignments stream open`);
    const from = appliesTo ?? String(this.seq);
    this.seq++;
    this.stream.write({ type: AssignmentsMessage_Type.TYPE_INCREMENTAL, appliesTo: from, resultsIn: String(this.seq), changes });
  }

  async stop(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    this.stream?.destroy();
    await this.server.shutdown(100);
  }
}
