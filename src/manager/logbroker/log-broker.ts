// The log broker (leader only): `service logs` fans in from the nodes running the service's tasks.
// A manager never dials a worker: each agent holds a ListenSubscriptions stream on its session, the
// broker sends it a subscription naming only the tasks assigned to that node, and the agent answers
// with PublishLogs, whose lines are accepted only for those tasks, from that node's own session.
// With --follow the subscription grows as the service does: a task of the service that a node has
// accepted since (a restart, a scale, a rolling update, a rescheduled task) is added and its node
// told. Bounded: subscriptions in all and per node, lines per message, line size, bytes per
// subscription (without --follow) and bytes queued towards a slow client (with --follow).
import type * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../base/errors.js";
import { isValidId, newId } from "../../base/ids.js";
import type { Timer } from "../../base/clock.js";
import type { ServiceLogsRequest } from "../../proto/shoal/v1/control.js";
import type { DispatcherServer, PublishLogsMessage, PublishLogsResponse, SubscriptionMessage, SubscriptionsRequest } from "../../proto/shoal/v1/dispatcher.js";
import { TaskState, type LogLine, type Task } from "../../proto/shoal/v1/objects.js";
import type { StoreEvent, StoreWatch } from "../../state/index.js";
import { MAX_LOG_LINE_BYTES, MAX_LOG_LINES_PER_MESSAGE } from "../../state/index.js";
import type { ManagerContext } from "../context.js";
import { handlerError } from "../handlers.js";

/** Open `service logs` calls on this leader. */
export const MAX_LOG_SUBSCRIPTIONS = 256;
/** Open `service logs` calls that involve one node. */
export const MAX_LOG_SUBSCRIPTIONS_PER_NODE = 32;
/** Bytes one subscription without --follow may receive (the tails of up to 64 full 256 KiB rings). */
export const MAX_SUBSCRIPTION_BYTES = 16 * 1024 * 1024;
/** Bytes queued towards one client before a following subscription is ended as too slow. */
export const MAX_QUEUED_CLIENT_BYTES = 8 * 1024 * 1024;
/** Without --follow, nodes that have not sent their tail by then are given up on. */
export const SUBSCRIPTION_DEADLINE_MS = 30_000;
/** Tail lines a request may ask for (per task). */
export const MAX_TAIL_LINES = 100_000;

/** Where a subscription's lines go: the client's stream, on this manager or forwarded. */
export interface LogSink {
  write(lines: LogLine[]): void;
  /** Bytes written but not yet sent to the client. */
  queuedBytes(): number;
  end(err?: ShoalError): void;
}

/** The dispatcher's session binding, filled in by the manager's wiring (dispatcher/ is a sibling). */
export interface AgentSessions {
  /** The node of the caller's own current session; NOT_FOUND / PERMISSION_DENIED otherwise. */
  bind(sessionId: string, call: Parameters<ManagerContext["server"]["peerOf"]>[0], method: string): { nodeId: string; sessionId: string };
  /** Runs when a node's session ends. */
  onEnd(listener: (nodeId: string, sessionId: string) => void): () => void;
}

interface Subscription {
  id: string;
  serviceId: string;
  follow: boolean;
  tail: number;
  sink: LogSink;
  /** node ID → the tasks of the service assigned to it. */
  tasks: Map<string, Set<string>>;
  taskInfo: Map<string, { slot: number; node: string }>;
  /** Without --follow: nodes that have not closed yet. */
  pending: Set<string>;
  bytes: number;
  timer: Timer | undefined;
  done: boolean;
}

interface Listener {
  nodeId: string;
  sessionId: string;
  call: grpc.ServerWritableStream<SubscriptionsRequest, SubscriptionMessage>;
}

export class LogBroker {
  private readonly subs = new Map<string, Subscription>();
  private readonly listeners = new Map<string, Listener>();
  private readonly unsubscribe: () => void;
  private readonly taskWatch: StoreWatch;

  constructor(
    private readonly ctx: ManagerContext,
    private readonly sessions: AgentSessions,
  ) {
    this.unsubscribe = sessions.onEnd((nodeId, sessionId) => this.sessionGone(nodeId, sessionId));
    this.taskWatch = ctx.store.watch({ tables: ["tasks"], kinds: ["create", "update"] }, { onEvent: (event) => this.taskChanged(event) });
  }

  get subscriptionCount(): number {
    return this.subs.size;
  }

  /** Leadership lost or shutdown: every subscription and listener ends. */
  endAll(err: ShoalError): void {
    for (const sub of [...this.subs.values()]) this.finish(sub, err);
    for (const l of [...this.listeners.values()]) l.call.end();
    this.listeners.clear();
  }

  close(): void {
    this.unsubscribe();
    this.taskWatch.close();
    this.endAll(new ShoalError("UNAVAILABLE", "this manager is shutting down"));
  }

  /** Starts a `service logs` call; returns the function that cancels it (client gone). */
  subscribe(req: ServiceLogsRequest, sink: LogSink): () => void {
    this.ctx.requireLeader();
    if (!isValidId(req.serviceId)) throw new ShoalError("INVALID_ARGUMENT", "service_id must be 25 characters of [0-9a-z]");
    if (req.tail > MAX_TAIL_LINES) throw new ShoalError("INVALID_ARGUMENT", `--tail may ask for at most ${MAX_TAIL_LINES} lines`);
    if (this.ctx.store.getService(req.serviceId) === undefined) throw new ShoalError("NOT_FOUND", `service ${req.serviceId} does not exist`);
    if (this.subs.size >= MAX_LOG_SUBSCRIPTIONS) throw new ShoalError("QUEUE_FULL", "this manager serves too many `service logs` calls; retry later");
    const sub: Subscription = {
      id: newId(),
      serviceId: req.serviceId,
      follow: req.follow,
      tail: req.tail,
      sink,
      tasks: new Map(),
      taskInfo: new Map(),
      pending: new Set(),
      bytes: 0,
      timer: undefined,
      done: false,
    };
    for (const task of this.ctx.store.listTasks({ serviceId: req.serviceId })) if (task.nodeId !== "") this.addTask(sub, task);
    for (const nodeId of sub.tasks.keys()) {
      const n = this.subscriptionsOf(nodeId);
      if (n >= MAX_LOG_SUBSCRIPTIONS_PER_NODE) throw new ShoalError("QUEUE_FULL", `node ${nodeId} already serves ${n} \`service logs\` calls; retry later`);
    }
    this.subs.set(sub.id, sub);
    for (const nodeId of sub.tasks.keys()) {
      // Without --follow a node with no listener now has nothing to say (it is down or not connected).
      if (this.sendTo(nodeId, sub) || sub.follow) sub.pending.add(nodeId);
    }
    if (!sub.follow) {
      if (sub.pending.size === 0) this.finish(sub);
      else sub.timer = this.ctx.clock.setTimeout(() => this.finish(sub), SUBSCRIPTION_DEADLINE_MS);
    }
    return () => this.cancel(sub);
  }

  private subscriptionsOf(nodeId: string): number {
    let n = 0;
    for (const s of this.subs.values()) if (s.tasks.has(nodeId)) n++;
    return n;
  }

  private addTask(sub: Subscription, task: Readonly<Task>): void {
    let set = sub.tasks.get(task.nodeId);
    if (set === undefined) sub.tasks.set(task.nodeId, (set = new Set()));
    set.add(task.id);
    sub.taskInfo.set(task.id, { slot: task.slot, node: this.nodeName(task) });
  }

  /**
   * A following subscription takes in the service's tasks that started since: once a node has
   * accepted a task (so its agent holds the task's log), the task is added and the node is sent the
   * grown subscription. A node new to the subscription counts against its per-node bound; past it,
   * that node's tasks are left out.
   */
  private taskChanged(event: StoreEvent): void {
    if (this.subs.size === 0) return;
    const tasks: Readonly<Task>[] =
      event.kind === "reset" ? this.ctx.store.listTasks({}) : event.table === "tasks" ? [event.object as Readonly<Task>] : [];
    for (const task of tasks) {
      if (task.nodeId === "" || (task.status?.state ?? TaskState.TASK_STATE_NEW) < TaskState.TASK_STATE_ACCEPTED) continue;
      for (const sub of this.subs.values()) {
        if (!sub.follow || sub.done || sub.serviceId !== task.serviceId || sub.taskInfo.has(task.id)) continue;
        if (!sub.tasks.has(task.nodeId) && this.subscriptionsOf(task.nodeId) >= MAX_LOG_SUBSCRIPTIONS_PER_NODE) continue;
        this.addTask(sub, task);
        sub.pending.add(task.nodeId);
        this.sendTo(task.nodeId, sub);
      }
    }
  }

  private nodeName(task: Readonly<Task>): string {
    const node = this.ctx.store.getNode(task.nodeId);
    return node?.description?.hostname || task.nodeId;
  }

  private message(nodeId: string, sub: Subscription): SubscriptionMessage {
    return { id: sub.id, taskIds: [...sub.tasks.get(nodeId)!], follow: sub.follow, tail: sub.tail, close: false };
  }

  private sendTo(nodeId: string, sub: Subscription): boolean {
    const listener = this.listeners.get(nodeId);
    if (listener === undefined) return false;
    listener.call.write(this.message(nodeId, sub));
    return true;
  }

  private cancel(sub: Subscription): void {
    if (sub.done) return;
    this.finish(sub, undefined, false);
  }

  private finish(sub: Subscription, err?: ShoalError, endSink = true): void {
    if (sub.done) return;
    sub.done = true;
    sub.timer?.cancel();
    this.subs.delete(sub.id);
    for (const nodeId of sub.tasks.keys()) {
      this.listeners.get(nodeId)?.call.write({ id: sub.id, taskIds: [], follow: false, tail: 0, close: true });
    }
    if (endSink) sub.sink.end(err);
  }

  private sessionGone(nodeId: string, sessionId: string): void {
    const listener = this.listeners.get(nodeId);
    if (listener !== undefined && listener.sessionId === sessionId) {
      this.listeners.delete(nodeId);
      listener.call.end();
    }
    for (const sub of [...this.subs.values()]) {
      if (!sub.follow && sub.pending.delete(nodeId) && sub.pending.size === 0) this.finish(sub);
    }
  }

  private listen(call: grpc.ServerWritableStream<SubscriptionsRequest, SubscriptionMessage>): void {
    this.ctx.requireLeader();
    const { nodeId, sessionId } = this.sessions.bind(call.request.sessionId, call, "ListenSubscriptions");
    const previous = this.listeners.get(nodeId);
    const listener: Listener = { nodeId, sessionId, call };
    this.listeners.set(nodeId, listener);
    previous?.call.end();
    const forget = (): void => {
      if (this.listeners.get(nodeId) === listener) this.listeners.delete(nodeId);
    };
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("error", forget);
    for (const sub of this.subs.values()) {
      if (sub.tasks.has(nodeId) && (sub.follow || sub.pending.has(nodeId))) call.write(this.message(nodeId, sub));
    }
  }

  /** One PublishLogs message from `nodeId`'s own session. */
  private accept(nodeId: string, msg: PublishLogsMessage): void {
    const sub = this.subs.get(msg.subscriptionId);
    if (sub === undefined) throw new ShoalError("NOT_FOUND", `no log subscription ${msg.subscriptionId} (the client went away); stop publishing`);
    const mine = sub.tasks.get(nodeId);
    if (mine === undefined) throw new ShoalError("PERMISSION_DENIED", `log subscription ${sub.id} is not for node ${nodeId}`);
    if (msg.lines.length > MAX_LOG_LINES_PER_MESSAGE) throw new ShoalError("INVALID_ARGUMENT", `at most ${MAX_LOG_LINES_PER_MESSAGE} lines per message`);
    let bytes = 0;
    for (const line of msg.lines) {
      if (!mine.has(line.taskId)) throw new ShoalError("PERMISSION_DENIED", `task ${line.taskId} is not assigned to node ${nodeId}; a node publishes only its own tasks' logs`);
      if (line.data.length > MAX_LOG_LINE_BYTES) throw new ShoalError("INVALID_ARGUMENT", `a log line holds at most ${MAX_LOG_LINE_BYTES} bytes`);
      bytes += line.data.length;
    }
    if (msg.lines.length > 0) {
      sub.bytes += bytes;
      if (!sub.follow && sub.bytes > MAX_SUBSCRIPTION_BYTES) {
        this.finish(sub, new ShoalError("QUEUE_FULL", `the logs exceed ${MAX_SUBSCRIPTION_BYTES} bytes; ask for fewer with --tail`));
        return;
      }
      if (sub.sink.queuedBytes() > MAX_QUEUED_CLIENT_BYTES) {
        this.finish(sub, new ShoalError("QUEUE_FULL", "the client reads the logs too slowly; the stream was ended"));
        return;
      }
      sub.sink.write(
        msg.lines.map((line) => ({ ...line, slot: sub.taskInfo.get(line.taskId)?.slot ?? 0, node: sub.taskInfo.get(line.taskId)?.node ?? nodeId })),
      );
    }
    if (msg.close && !sub.follow && sub.pending.delete(nodeId) && sub.pending.size === 0) this.finish(sub);
  }

  private publish(call: grpc.ServerReadableStream<PublishLogsMessage, PublishLogsResponse>, callback: grpc.sendUnaryData<PublishLogsResponse>): void {
    let bound: { sessionId: string; nodeId: string } | undefined;
    let failed = false;
    call.on("data", (msg: PublishLogsMessage) => {
      if (failed) return;
      try {
        if (bound === undefined) {
          this.ctx.requireLeader();
          bound = { sessionId: msg.sessionId, nodeId: this.sessions.bind(msg.sessionId, call, "PublishLogs").nodeId };
        } else if (msg.sessionId !== bound.sessionId) {
          throw new ShoalError("INVALID_ARGUMENT", "one PublishLogs stream carries one session");
        }
        this.accept(bound.nodeId, msg);
      } catch (err) {
        failed = true;
        callback(handlerError(err, this.ctx.logger));
      }
    });
    call.on("end", () => {
      if (!failed) callback(null, {});
    });
    call.on("error", () => undefined);
  }

  /** The two Dispatcher methods this broker serves. */
  agentHandlers(): Pick<DispatcherServer, "listenSubscriptions" | "publishLogs"> {
    return {
      listenSubscriptions: (call) => {
        try {
          this.listen(call);
        } catch (err) {
          endStream(call, handlerError(err, this.ctx.logger));
        }
      },
      publishLogs: (call, callback) => this.publish(call, callback),
    };
  }

  /** The Control ServiceLogs handler (TLS; the local socket comes through Manager.serviceLogs). */
  serviceLogsHandler(): grpc.handleServerStreamingCall<ServiceLogsRequest, { lines: LogLine[] }> {
    return (call) => {
      try {
        const cancel = this.subscribe(call.request, callSink(call));
        call.on("cancelled", cancel);
      } catch (err) {
        endStream(call, handlerError(err, this.ctx.logger));
      }
    };
  }
}

/** A sink that writes to a server stream (the TLS call, or the local socket's). */
export function callSink(call: grpc.ServerWritableStream<unknown, { lines: LogLine[] }>): LogSink {
  return {
    write: (lines) => {
      for (let i = 0; i < lines.length; i += MAX_LOG_LINES_PER_MESSAGE) call.write({ lines: lines.slice(i, i + MAX_LOG_LINES_PER_MESSAGE) });
    },
    queuedBytes: () => call.writableLength,
    end: (err) => {
      if (err === undefined) call.end();
      else endStream(call, handlerError(err));
    },
  };
}

/** Ends a server stream with an error status (`destroy(err)` would drop it; see dispatcher/end-stream.ts). */
function endStream(call: grpc.ServerWritableStream<unknown, unknown>, err: Partial<grpc.StatusObject> & Error): void {
  if (call.writableEnded || call.destroyed) return;
  call.emit("error", err);
}
