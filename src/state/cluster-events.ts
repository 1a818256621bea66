// What `shoal events` shows, derived from one applied store change: node joined, down/ready,
// relabelled, role and availability changes, removed; service created, updated, scaled, removed;
// task state changes; secret created/updated/removed; CA root rotation, certificate expiry, join
// token rotation, autolock, revocations. Pure: the caller gives the time and the raft index.
//
// Change views carry no secret data, CA key, unlock key or join tokens (staging.ts changeView), and
// nothing here reads them: a secret's event has its name and zone only, a token rotation says which
// role's token changed (the caller, which holds the full cluster, tells), never the token.
import type { ClusterEvent } from "../proto/shoal/v1/control.js";
import {
  NodeAvailability,
  NodeRole,
  ServiceMode,
  ServiceSpec,
  TaskState,
  UpdateState,
  type Cluster,
  type Node,
  type Secret,
  type Service,
  type Task,
} from "../proto/shoal/v1/objects.js";
import { nodeZone, serviceZone } from "./constraints.js";
import { nodeStateName, taskZone } from "./placement.js";
import { taskStateName } from "./task-state.js";
import type { StoreChange } from "./watch.js";

/** The event types a client can filter on; "cluster" marks the stream's own gaps (a snapshot reset). */
export const EVENT_TYPES = ["node", "service", "task", "secret", "ca", "cluster"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export type JoinTokenRole = "worker" | "manager";

export interface DeriveContext {
  /** When the change was applied here (ms since the epoch). */
  timeMs: number;
  /** The raft index of the change. */
  index: number;
  /** For a cluster update: the roles whose join token changed (change views carry no tokens). */
  rotatedJoinTokens?: readonly JoinTokenRole[];
}

/** The events one change makes (often none: a heartbeat, a certificate renewal, a key-value write). */
export function deriveEvents(change: StoreChange, ctx: DeriveContext): ClusterEvent[] {
  const out: Omit<ClusterEvent, "time" | "index">[] = [];
  switch (change.table) {
    case "nodes":
      nodeEvents(change.kind, change.object as Node, change.oldObject as Node | undefined, out);
      break;
    case "services":
      serviceEvents(change.kind, change.object as Service, change.oldObject as Service | undefined, out);
      break;
    case "tasks":
      taskEvents(change.kind, change.object as Task, change.oldObject as Task | undefined, out);
      break;
    case "secrets":
      secretEvents(change.kind, change.object as Secret, out);
      break;
    case "clusters":
      if (change.kind === "update") caEvents(change.object as Cluster, change.oldObject as Cluster, ctx.rotatedJoinTokens ?? [], out);
      break;
    case "kv":
      break;
  }
  const time = new Date(ctx.timeMs);
  const index = BigInt(ctx.index);
  return out.map((e) => ({ ...e, time, index }));
}

/** The marker put in the stream where events were lost (the store was replaced from a snapshot). */
export function resetEvent(ctx: DeriveContext, reason: string): ClusterEvent {
  return { type: "cluster", action: "reset", id: "", name: "", attributes: { reason }, time: new Date(ctx.timeMs), index: BigInt(ctx.index) };
}

// ---- nodes ----

function roleName(role: NodeRole): string {
  return role === NodeRole.NODE_ROLE_MANAGER ? "manager" : role === NodeRole.NODE_ROLE_WORKER ? "worker" : "unknown";
}

function availabilityName(a: NodeAvailability): string {
  return a === NodeAvailability.NODE_AVAILABILITY_PAUSE ? "pause" : a === NodeAvailability.NODE_AVAILABILITY_DRAIN ? "drain" : "active";
}

function nodeEvents(kind: StoreChange["kind"], node: Node, old: Node | undefined, out: Omit<ClusterEvent, "time" | "index">[]): void {
  const base = { type: "node", id: node.id, name: node.description?.hostname || node.id };
  const attrs = (more: Record<string, string>): Record<string, string> => ({ zone: nodeZone(node), role: roleName(node.role !== NodeRole.NODE_ROLE_UNSPECIFIED ? node.role : (node.spec?.desiredRole ?? 0)), ...more });
  if (kind === "create") {
    out.push({ ...base, action: "create", attributes: attrs({ state: nodeStateName(node.status?.state ?? 0) }) });
    return;
  }
  if (kind === "remove") {
    out.push({ ...base, action: "remove", attributes: attrs({}) });
    return;
  }
  if (old === undefined) return;
  const state = node.status?.state ?? 0;
  const oldState = old.status?.state ?? 0;
  if (state !== oldState) {
    out.push({ ...base, action: nodeStateName(state), attributes: attrs({ state: nodeStateName(state), old_state: nodeStateName(oldState) }) });
  }
  const labels = node.spec?.labels ?? {};
  const oldLabels = old.spec?.labels ?? {};
  const added = Object.keys(labels).filter((k) => oldLabels[k] !== labels[k]).sort();
  const removed = Object.keys(oldLabels).filter((k) => !(k in labels)).sort();
  if (added.length > 0 || removed.length > 0) {
    const more: Record<string, string> = {};
    if (added.length > 0) more["labels_added"] = added.map((k) => `${k}=${labels[k]}`).join(",");
    if (removed.length > 0) more["labels_removed"] = removed.join(",");
    if (nodeZone(node) !== nodeZone(old)) more["old_zone"] = nodeZone(old);
    out.push({ ...base, action: "label", attributes: attrs(more) });
  }
  const availability = node.spec?.availability ?? 0;
  const oldAvailability = old.spec?.availability ?? 0;
  if (availability !== oldAvailability) {
    out.push({ ...base, action: "availability", attributes: attrs({ availability: availabilityName(availability), old_availability: availabilityName(oldAvailability) }) });
  }
  const desired = node.spec?.desiredRole ?? 0;
  const oldDesired = old.spec?.desiredRole ?? 0;
  if (desired !== oldDesired && oldDesired !== NodeRole.NODE_ROLE_UNSPECIFIED) {
    out.push({
      ...base,
      action: desired === NodeRole.NODE_ROLE_MANAGER ? "promote" : "demote",
      attributes: attrs({ desired_role: roleName(desired), old_desired_role: roleName(oldDesired) }),
    });
  }
  if (node.role !== old.role && old.role !== NodeRole.NODE_ROLE_UNSPECIFIED) {
    out.push({ ...base, action: "role", attributes: attrs({ role: roleName(node.role), old_role: roleName(old.role) }) });
  }
}

// ---- services ----

function serviceAttrs(service: Service): Record<string, string> {
  const spec = service.spec;
  const attrs: Record<string, string> = {};
  if (spec === undefined) return attrs;
  let zone = spec.zone;
  try {
    zone = serviceZone(spec);
  } catch {
    // A spec the store accepted has a valid zone; keep the raw field if not.
  }
  attrs["zone"] = zone === "" ? "default" : zone;
  attrs["mode"] = spec.mode === ServiceMode.SERVICE_MODE_GLOBAL ? "global" : "replicated";
  if (spec.mode !== ServiceMode.SERVICE_MODE_GLOBAL) attrs["replicas"] = String(spec.replicas);
  attrs["image"] = spec.container?.image || "(process)";
  attrs["spec_version"] = String(service.specVersion);
  return attrs;
}

function updateStateName(state: UpdateState): string {
  const name = UpdateState[state];
  return typeof name === "string" ? name.replace(/^UPDATE_STATE_/, "").toLowerCase() : String(state);
}

/** The spec's bytes with the replica count left out: tells a scale from another change. */
function specWithoutReplicas(spec: ServiceSpec | undefined): string {
  return spec === undefined ? "" : Buffer.from(ServiceSpec.encode({ ...spec, replicas: 0 }).finish()).toString("base64");
}

function serviceEvents(kind: StoreChange["kind"], service: Service, old: Service | undefined, out: Omit<ClusterEvent, "time" | "index">[]): void {
  const base = { type: "service", id: service.id, name: service.spec?.name ?? service.id };
  if (kind === "create") {
    out.push({ ...base, action: "create", attributes: serviceAttrs(service) });
    return;
  }
  if (kind === "remove") {
    // `service rm` marks the service first (the "remove" event); its deletion once its tasks have
    // ended is not a second event.
    if (!service.pendingDelete) out.push({ ...base, action: "remove", attributes: serviceAttrs(service) });
    return;
  }
  if (old === undefined) return;
  if (service.pendingDelete && !old.pendingDelete) {
    out.push({ ...base, action: "remove", attributes: serviceAttrs(service) });
    return;
  }
  const replicas = service.spec?.replicas ?? 0;
  const oldReplicas = old.spec?.replicas ?? 0;
  if (service.specVersion !== old.specVersion) {
    if (specWithoutReplicas(service.spec) !== specWithoutReplicas(old.spec)) {
      const attrs: Record<string, string> = { ...serviceAttrs(service), old_spec_version: String(old.specVersion) };
      if ((service.spec?.container?.image ?? "") !== (old.spec?.container?.image ?? "")) attrs["old_image"] = old.spec?.container?.image || "(process)";
      out.push({ ...base, action: "update", attributes: attrs });
    }
    if (replicas !== oldReplicas && service.spec?.mode !== ServiceMode.SERVICE_MODE_GLOBAL) {
      out.push({ ...base, action: "scale", attributes: { ...serviceAttrs(service), old_replicas: String(oldReplicas) } });
    }
  }
  const updateState = service.updateStatus?.state ?? UpdateState.UPDATE_STATE_NONE;
  const oldUpdateState = old.updateStatus?.state ?? UpdateState.UPDATE_STATE_NONE;
  if (updateState !== oldUpdateState) {
    out.push({ ...base, action: "update_state", attributes: { ...serviceAttrs(service), update_state: updateStateName(updateState), old_update_state: updateStateName(oldUpdateState) } });
  }
}

// ---- tasks ----

function taskEvents(kind: StoreChange["kind"], task: Task, old: Task | undefined, out: Omit<ClusterEvent, "time" | "index">[]): void {
  const state = task.status?.state ?? 0;
  const base = {
    type: "task",
    id: task.id,
    name: `${task.serviceName || task.serviceId}.${task.slot !== 0 ? String(task.slot) : task.nodeId}`,
  };
  const attrs = (more: Record<string, string>): Record<string, string> => {
    const a: Record<string, string> = { service: task.serviceName, service_id: task.serviceId, node: task.nodeId, zone: taskZone(task), state: taskStateName(state) };
    if (task.status !== undefined && (task.status.exitCode !== 0 || state === TaskState.TASK_STATE_COMPLETE || state === TaskState.TASK_STATE_FAILED)) a["exit_code"] = String(task.status.exitCode);
    return { ...a, ...more };
  };
  if (kind === "create") {
    out.push({ ...base, action: "create", attributes: attrs({}) });
    return;
  }
  if (kind === "remove") {
    out.push({ ...base, action: "remove", attributes: attrs({}) });
    return;
  }
  if (old === undefined) return;
  const oldState = old.status?.state ?? 0;
  // One event per state change: a message-only status update, a heartbeat or a desired-state write is none.
  if (state !== oldState) out.push({ ...base, action: "state", attributes: attrs({ old_state: taskStateName(oldState) }) });
}

// ---- secrets ----

function secretEvents(kind: StoreChange["kind"], secret: Secret, out: Omit<ClusterEvent, "time" | "index">[]): void {
  // Name and zone only: never the data, its size or its MAC.
  const zone = secret.spec?.zone ?? "";
  out.push({ type: "secret", action: kind, id: secret.id, name: secret.spec?.name ?? secret.id, attributes: { zone: zone === "" ? "default" : zone } });
}

// ---- the CA ----

function expiryText(seconds: bigint): string {
  if (seconds === 0n) return "default";
  return seconds % 3600n === 0n ? `${seconds / 3600n}h` : `${seconds}s`;
}

function caEvents(cluster: Cluster, old: Cluster, rotatedTokens: readonly JoinTokenRole[], out: Omit<ClusterEvent, "time" | "index">[]): void {
  const base = { type: "ca", id: cluster.id, name: cluster.spec?.name || cluster.id };
  const rotation = cluster.rootCa?.rootRotation;
  const oldRotation = old.rootCa?.rootRotation;
  if (rotation !== undefined && oldRotation === undefined) {
    out.push({ ...base, action: "rotate", attributes: { phase: "start" } });
  } else if (rotation === undefined && oldRotation !== undefined) {
    const done = cluster.rootCa?.caDigest !== old.rootCa?.caDigest;
    out.push({ ...base, action: "rotate", attributes: { phase: "end", result: done ? "done" : "cancelled" } });
  } else if (rotation !== undefined && oldRotation !== undefined && !Buffer.from(rotation.caCertPem).equals(Buffer.from(oldRotation.caCertPem))) {
    out.push({ ...base, action: "rotate", attributes: { phase: "replace" } });
  }
  const expiry = cluster.spec?.caConfig?.nodeCertExpirySeconds ?? 0n;
  const oldExpiry = old.spec?.caConfig?.nodeCertExpirySeconds ?? 0n;
  if (expiry !== oldExpiry) out.push({ ...base, action: "cert-expiry", attributes: { expiry: expiryText(expiry), old_expiry: expiryText(oldExpiry) } });
  const external = cluster.spec?.caConfig?.externalCa?.url ?? "";
  const oldExternal = old.spec?.caConfig?.externalCa?.url ?? "";
  if (external !== oldExternal) out.push({ ...base, action: "external-ca", attributes: { url: external || "(none)", old_url: oldExternal || "(none)" } });
  for (const role of rotatedTokens) {
    const expires = role === "worker" ? cluster.rootCa?.joinTokens?.workerExpiresAt : cluster.rootCa?.joinTokens?.managerExpiresAt;
    out.push({ ...base, action: "token-rotate", attributes: { role, expires: expires === undefined ? "never" : expires.toISOString() } });
  }
  const autolock = cluster.spec?.encryptionConfig?.autolockManagers === true;
  if (autolock !== (old.spec?.encryptionConfig?.autolockManagers === true)) out.push({ ...base, action: "autolock", attributes: { autolock: String(autolock) } });
  const revokedBefore = new Set((old.revocationList?.nodes ?? []).map((n) => n.nodeId));
  for (const entry of cluster.revocationList?.nodes ?? []) {
    if (revokedBefore.has(entry.nodeId)) continue;
    out.push({ ...base, action: "revoke", attributes: { node: entry.nodeId, serials: String(entry.serials.length) } });
  }
}
