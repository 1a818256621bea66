// Test parts for the dispatcher's assignments: a one-manager daemon whose log is captured, workers
// joined through the real CA (and relabelled / renewed into a zone), objects written straight into
// the store (tasks assigned to any node, as a buggy scheduler could), and an agent stand-in that
// records every Assignments message it receives over mutual TLS.
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { ShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr } from "../../src/ca/index.js";
import type { ManagerContext } from "../../src/manager/context.js";
import type { Manager } from "../../src/manager/manager.js";
import type { PrefetchOrderBoard } from "../../src/manager/prefetch/order-board.js";
import { CAClient, type IssueNodeCertificateResponse, type NodeCertificateStatusResponse } from "../../src/proto/shoal/v1/ca.js";
import {
  AssignmentAction,
  AssignmentsMessage_Type,
  DispatcherClient,
  type AssignmentsMessage,
  type HeartbeatResponse,
  type PrefetchOrder,
  type SessionMessage,
  type TaskStatusUpdate,
  type UpdateTaskStatusResponse,
} from "../../src/proto/shoal/v1/dispatcher.js";
import { CertificateStatus, NodeAvailability, Secret, Service, Task, TaskState, type NodeDescription } from "../../src/proto/shoal/v1/objects.js";
import { createJoinChannel, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { waitFor } from "../e2e/cluster.js";
import { channelAs, renew, type ClientIdentity } from "../e2e/identity.js";
import { singleManager, type SingleManager } from "./single-manager.js";

/** Liveness guard only: a change reaches a stream within milliseconds. */
export const ARRIVAL_GUARD_MS = 10_000;

export interface LoggedManager extends SingleManager {
  ctx: ManagerContext;
  rootCaPem: string;
  /** The leader's prefetch orders, which its dispatcher pushes. */
  prefetch: PrefetchOrderBoard;
  /** Every log line the manager wrote (JSON text). */
  logLines: string[];
}

export async function loggedManager(t: TestContext, prefix: string): Promise<LoggedManager> {
  const logLines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });
  // The tests write tasks into the store themselves: no orchestrator or scheduler to rewrite them.
  const m = await singleManager(t, prefix, { logger, workloadLoops: false });
  // The daemon keeps its manager private; a test that must write tasks straight into the store reaches it here.
  const manager = (m.daemon as unknown as { manager: Manager | undefined }).manager;
  if (manager === undefined) throw new Error("the daemon runs no manager");
  await waitFor("the manager to lead", () => manager.isLeader, ARRIVAL_GUARD_MS);
  return { ...m, ctx: manager.ctx, prefetch: manager.prefetchOrders, rootCaPem: readFileSync(join(m.dir, "certificates/root-ca.crt"), "utf8"), logLines };
}

export interface Worker extends ClientIdentity {
  nodeId: string;
}

/** A worker identity issued through the real join (no agent runs for it: only the test opens its sessions). */
export async function joinWorker(m: LoggedManager, hostname: string): Promise<Worker> {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const ch = createJoinChannel(m.addr, m.rootCaPem);
  try {
    const ca = ch.client(CAClient);
    const issued = await unaryCall<IssueNodeCertificateResponse>((cb) =>
      ca.issueNodeCertificate({ csr: Buffer.from(csrPem), token: m.init.workerToken, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, hostname, addr: "" }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb),
    );
    for (;;) {
      const status = await unaryCall<NodeCertificateStatusResponse>((cb) => ca.nodeCertificateStatus({ nodeId: issued.nodeId }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
      if (status.status === CertificateStatus.CERTIFICATE_STATUS_ISSUED && status.certificate.length > 0) {
        return { nodeId: issued.nodeId, certPem: Buffer.from(status.certificate).toString("utf8"), keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    ch.close();
  }
}

/** Sets the node's zone label in the store (as `node update --label-add zone=Z` does). */
export async function setZoneLabel(m: LoggedManager, nodeId: string, zone: string): Promise<void> {
  for (;;) {
    const node = m.ctx.store.getNode(nodeId)!;
    const updated = { ...node, spec: { ...node.spec!, labels: { ...node.spec!.labels, zone } } };
    try {
      await m.ctx.propose((tx) => tx.updateNode(updated));
      return;
    } catch (err) {
      if (!(err instanceof ShoalError && err.code === "VERSION_CONFLICT")) throw err;
    }
  }
}

/** Renews the worker's certificate with a new key: the CA signs the zone the store holds now. */
export async function renewWorker(m: LoggedManager, worker: Worker): Promise<Worker> {
  const ch = channelAs(m.addr, m.rootCaPem, m.init.clusterId, worker);
  try {
    const { privateKey, csrPem } = await createNodeKeyAndCsr();
    const res = await renew(ch, Buffer.from(csrPem));
    return { nodeId: worker.nodeId, certPem: Buffer.from(res.certificate).toString("utf8"), keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
  } finally {
    ch.close();
  }
}

/** A worker labelled into `zone` and holding a certificate that says so. */
export async function zonedWorker(m: LoggedManager, hostname: string, zone: string): Promise<Worker> {
  const joined = await joinWorker(m, hostname);
  await setZoneLabel(m, joined.nodeId, zone);
  return renewWorker(m, joined);
}

export async function createService(m: LoggedManager, name: string, zone: string, secretIds: string[] = []): Promise<Service> {
  const service = Service.fromPartial({
    id: newId(),
    spec: { name, replicas: 1, zone, container: { command: ["sleep", "100"], secrets: secretIds.map((secretId) => ({ secretId, secretName: "", target: "" })) } },
    specVersion: 1n,
  });
  await m.ctx.propose((tx) => tx.createService(service));
  return m.ctx.store.getService(service.id)!;
}

export async function createSecret(m: LoggedManager, name: string, data: Buffer, zone: string): Promise<Secret> {
  const secret = Secret.fromPartial({ id: newId(), spec: { name, data, zone } });
  await m.ctx.propose((tx) => tx.createSecret(secret));
  return m.ctx.store.getSecret(secret.id)!;
}

/** Writes a task assigned to `nodeId` straight into the store, whatever its zone. */
export async function assignTask(m: LoggedManager, opts: { service: Service; nodeId: string; zone: string; secrets?: Secret[]; state?: TaskState }): Promise<Task> {
  const task = Task.fromPartial({
    id: newId(),
    serviceId: opts.service.id,
    serviceName: opts.service.spec!.name,
    nodeId: opts.nodeId,
    zone: opts.zone,
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: opts.state ?? TaskState.TASK_STATE_ASSIGNED, message: "assigned by the test" },
    spec: { command: ["sleep", "100"], secrets: (opts.secrets ?? []).map((s) => ({ secretId: s.id, secretName: s.spec!.name, target: s.spec!.name })) },
    executor: "process",
    specVersion: 1n,
  });
  await m.ctx.propose((tx) => tx.createTask(task));
  return m.ctx.store.getTask(task.id)!;
}

/** Read-modify-write of a task in the store (as the orchestrator would). */
export async function editTask(m: LoggedManager, taskId: string, edit: (task: Task) => Task): Promise<void> {
  const task = m.ctx.store.getTask(taskId)!;
  await m.ctx.propose((tx) => tx.updateTask(edit(task)));
}

export interface Received {
  messages: AssignmentsMessage[];
  tasks: Map<string, Task>;
  secrets: Map<string, Secret>;
  prefetch: Map<string, PrefetchOrder>;
  /** Every task and secret ID (and prefetch job ID) that ever arrived in an UPDATE on this stream. */
  everTasks: Set<string>;
  everSecrets: Set<string>;
  everPrefetch: Set<string>;
  /** Set when a message broke the sequence (applies_to ≠ the previous results_in, or no COMPLETE first). */
  gap: string | undefined;
  ended: Promise<ShoalError>;
  cancel(): void;
  /** Stops reading (flow control backs up to the manager) and starts again. */
  pause(): void;
  resume(): void;
}

/** An agent's view of one Assignments stream: applies COMPLETE and INCREMENTAL messages as the contract says. */
export function openAssignments(ch: SecureChannel, sessionId: string): Received {
  const stream = ch.client(DispatcherClient).assignments({ sessionId });
  const r: Received = { messages: [], tasks: new Map(), secrets: new Map(), prefetch: new Map(), everTasks: new Set(), everSecrets: new Set(), everPrefetch: new Set(), gap: undefined, ended: undefined as unknown as Promise<ShoalError>, cancel: () => stream.cancel(), pause: () => stream.pause(), resume: () => stream.resume() };
  r.ended = new Promise<ShoalError>((resolve) => {
    stream.on("error", (err) => resolve(fromGrpcError(err)));
    stream.on("end", () => resolve(new ShoalError("UNAVAILABLE", "stream ended without a status")));
  });
  stream.on("data", (msg: AssignmentsMessage) => {
    const previous = r.messages.at(-1);
    r.messages.push(msg);
    if (msg.type === AssignmentsMessage_Type.TYPE_COMPLETE) {
      if (previous !== undefined) r.gap ??= "a second COMPLETE on one stream";
      r.tasks.clear();
      r.secrets.clear();
      r.prefetch.clear();
    } else if (previous === undefined) {
      r.gap ??= "the first message is not COMPLETE";
    } else if (msg.appliesTo !== previous.resultsIn) {
      r.gap ??= `applies_to ${msg.appliesTo} after results_in ${previous.resultsIn}`;
    }
    for (const change of msg.changes) {
      const { task, secret, prefetch } = change.assignment ?? {};
      const remove = change.action === AssignmentAction.ASSIGNMENT_ACTION_REMOVE;
      if (task !== undefined) {
        if (remove) r.tasks.delete(task.id);
        else {
          r.tasks.set(task.id, task);
          r.everTasks.add(task.id);
        }
      }
      if (secret !== undefined) {
        if (remove) r.secrets.delete(secret.id);
        else {
          r.secrets.set(secret.id, secret);
          r.everSecrets.add(secret.id);
        }
      }
      if (prefetch !== undefined) {
        if (remove) r.prefetch.delete(prefetch.jobId);
        else {
          r.prefetch.set(prefetch.jobId, prefetch);
          r.everPrefetch.add(prefetch.jobId);
        }
      }
    }
  });
  return r;
}

export interface WorkerLink {
  ch: SecureChannel;
  sessionId: string;
  sessionEnded: Promise<ShoalError>;
  assignments: Received;
  close(): void;
}

/** Opens a session as `worker` (with a description) and its Assignments stream. */
export async function connect(m: LoggedManager, worker: ClientIdentity, description?: NodeDescription): Promise<WorkerLink> {
  const ch = channelAs(m.addr, m.rootCaPem, m.init.clusterId, worker);
  const session = ch.client(DispatcherClient).session({ description, addr: "" });
  let endedResolve!: (e: ShoalError) => void;
  const sessionEnded = new Promise<ShoalError>((r) => (endedResolve = r));
  const first = await new Promise<SessionMessage>((resolve, reject) => {
    session.once("data", resolve);
    session.on("error", (err) => {
      reject(fromGrpcError(err));
      endedResolve(fromGrpcError(err));
    });
  });
  const assignments = openAssignments(ch, first.sessionId);
  await waitFor("the COMPLETE set", () => assignments.messages.length > 0, ARRIVAL_GUARD_MS);
  return {
    ch,
    sessionId: first.sessionId,
    sessionEnded,
    assignments,
    close: () => {
      assignments.cancel();
      session.cancel();
      ch.close();
    },
  };
}

export function heartbeatOn(ch: SecureChannel, sessionId: string): Promise<HeartbeatResponse> {
  return unaryCall<HeartbeatResponse>((cb) => ch.client(DispatcherClient).heartbeat({ sessionId }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
}

export function reportStatus(ch: SecureChannel, sessionId: string, updates: TaskStatusUpdate[]): Promise<UpdateTaskStatusResponse> {
  return unaryCall<UpdateTaskStatusResponse>((cb) => ch.client(DispatcherClient).updateTaskStatus({ sessionId, updates }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
}

export function statusUpdate(taskId: string, state: TaskState, message = ""): TaskStatusUpdate {
  return { taskId, status: { state, message, err: "", timestamp: undefined, exitCode: 0, pid: 0 } };
}

/** Asserts that the stream's sequence was gap-free. */
export function assertNoGap(r: Received, who: string): void {
  assert.equal(r.gap, undefined, `${who}: ${r.gap}`);
}
