// What `--format json` prints and what the tables are made of: plain objects with camelCase fields
// that are always present (empty string, 0 or [] rather than missing), full IDs, lower-case enum
// names, ISO-8601 times. Secret data is never part of any view. Every string that came from a node
// or a user is shown with control and bidi-control characters escaped (`\x1b`, `\u202e`), in tables
// and JSON alike, so stored text can neither drive the terminal nor forge a row.
import { escapeUnsafeChars as shown } from "../base/text.js";
import {
  ManagerStatus_Reachability,
  NodeAvailability,
  NodeRole,
  NodeState,
  TaskState,
  type Node,
  type Secret,
  type Service,
  type Task,
} from "../proto/shoal/v1/objects.js";
import type { InfoResponse } from "../proto/shoal/v1/local.js";

export function roleName(role: NodeRole): string {
  switch (role) {
    case NodeRole.NODE_ROLE_MANAGER:
      return "manager";
    case NodeRole.NODE_ROLE_WORKER:
      return "worker";
    default:
      return "";
  }
}

export function availabilityName(availability: NodeAvailability): string {
  switch (availability) {
    case NodeAvailability.NODE_AVAILABILITY_PAUSE:
      return "pause";
    case NodeAvailability.NODE_AVAILABILITY_DRAIN:
      return "drain";
    default:
      return "active";
  }
}

export function parseAvailability(text: string): NodeAvailability {
  switch (text) {
    case "pause":
      return NodeAvailability.NODE_AVAILABILITY_PAUSE;
    case "drain":
      return NodeAvailability.NODE_AVAILABILITY_DRAIN;
    default:
      return NodeAvailability.NODE_AVAILABILITY_ACTIVE;
  }
}

function nodeStateName(state: NodeState | undefined): string {
  switch (state) {
    case NodeState.NODE_STATE_READY:
      return "ready";
    case NodeState.NODE_STATE_DOWN:
      return "down";
    case NodeState.NODE_STATE_DISCONNECTED:
      return "disconnected";
    default:
      return "unknown";
  }
}

/** "leader", "reachable", "unreachable", "unknown" for managers; "" for workers. */
function managerStatusName(node: Node): string {
  const status = node.managerStatus;
  if (status === undefined) return "";
  if (status.leader) return "leader";
  switch (status.reachability) {
    case ManagerStatus_Reachability.REACHABILITY_REACHABLE:
      return "reachable";
    case ManagerStatus_Reachability.REACHABILITY_UNREACHABLE:
      return "unreachable";
    default:
      return "unknown";
  }
}

export function taskStateName(state: TaskState | undefined): string {
  if (state === undefined || state === TaskState.UNRECOGNIZED) return "unknown";
  return TaskState[state].replace(/^TASK_STATE_/, "").toLowerCase();
}

function iso(date: Date | undefined): string {
  return date === undefined ? "" : date.toISOString();
}

function sortedLabels(labels: { [key: string]: string } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(labels ?? {}).sort()) out[shown(key)] = shown(labels![key]!);
  return out;
}

function shownAll(texts: readonly string[] | undefined): string[] {
  return (texts ?? []).map(shown);
}

export interface NodeView {
  id: string;
  self: boolean;
  hostname: string;
  status: string;
  availability: string;
  role: string;
  desiredRole: string;
  managerStatus: string;
  addr: string;
  zone: string;
  labels: Record<string, string>;
  version: number;
  createdAt: string;
  updatedAt: string;
  certificate: { serial: string; notAfter: string; role: string; zone: string };
}

export function nodeView(node: Node, localNodeId: string): NodeView {
  const labels = sortedLabels(node.spec?.labels);
  return {
    id: node.id,
    self: node.id === localNodeId && localNodeId !== "",
    hostname: shown(node.description?.hostname ?? ""),
    status: nodeStateName(node.status?.state),
    availability: availabilityName(node.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE),
    role: roleName(node.role),
    desiredRole: roleName(node.spec?.desiredRole ?? NodeRole.NODE_ROLE_UNSPECIFIED),
    managerStatus: managerStatusName(node),
    addr: shown(node.managerStatus?.addr || node.status?.addr || ""),
    zone: labels["zone"] ?? "default",
    labels,
    version: Number(node.meta?.version ?? 0n),
    createdAt: iso(node.meta?.createdAt),
    updatedAt: iso(node.meta?.updatedAt),
    certificate: {
      serial: node.certificate?.serial ?? "",
      notAfter: iso(node.certificate?.notAfter),
      role: roleName(node.certificate?.role ?? NodeRole.NODE_ROLE_UNSPECIFIED),
      zone: shown(node.certificate?.zone ?? ""),
    },
  };
}

export interface ServiceView {
  id: string;
  name: string;
  replicas: number;
  runningTasks: number;
  image: string;
  command: string[];
  args: string[];
  env: string[];
  zone: string;
  constraints: string[];
  secrets: { secretId: string; secretName: string; target: string }[];
  labels: Record<string, string>;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export function serviceView(service: Service, runningTasks: number): ServiceView {
  const spec = service.spec;
  const container = spec?.container;
  return {
    id: service.id,
    name: shown(spec?.name ?? ""),
    replicas: spec?.replicas ?? 0,
    runningTasks,
    image: shown(container?.image ?? ""),
    command: shownAll(container?.command),
    args: shownAll(container?.args),
    env: shownAll(container?.env),
    zone: shown(spec?.zone ?? ""),
    constraints: shownAll(spec?.constraints),
    secrets: (container?.secrets ?? []).map((s) => ({ secretId: shown(s.secretId), secretName: shown(s.secretName), target: shown(s.target) })),
    labels: sortedLabels(spec?.labels),
    version: Number(service.meta?.version ?? 0n),
    createdAt: iso(service.meta?.createdAt),
    updatedAt: iso(service.meta?.updatedAt),
  };
}

export interface TaskView {
  id: string;
  name: string;
  serviceId: string;
  serviceName: string;
  slot: number;
  nodeId: string;
  nodeHostname: string;
  desiredState: string;
  state: string;
  message: string;
  error: string;
  exitCode: number;
  zone: string;
  updatedAt: string;
}

export function taskView(task: Task, hostnameOf: (nodeId: string) => string): TaskView {
  return {
    id: task.id,
    name: shown(`${task.serviceName}.${task.slot}`),
    serviceId: task.serviceId,
    serviceName: shown(task.serviceName),
    slot: task.slot,
    nodeId: task.nodeId,
    nodeHostname: task.nodeId === "" ? "" : shown(hostnameOf(task.nodeId)),
    desiredState: taskStateName(task.desiredState),
    state: taskStateName(task.status?.state),
    message: shown(task.status?.message ?? ""),
    error: shown(task.status?.err ?? ""),
    exitCode: task.status?.exitCode ?? 0,
    zone: shown(task.zone),
    updatedAt: iso(task.status?.timestamp ?? task.meta?.updatedAt),
  };
}

export interface SecretView {
  id: string;
  name: string;
  zone: string;
  /** HMAC-SHA256 of the data under the managers' key: tells versions apart, reveals nothing. */
  dataMac: string;
  sizeBytes: number;
  labels: Record<string, string>;
  version: number;
  createdAt: string;
  updatedAt: string;
}

/** Built field by field, so that data a buggy server might send back is never printed. */
export function secretView(secret: Secret): SecretView {
  return {
    id: secret.id,
    name: shown(secret.spec?.name ?? ""),
    zone: shown(secret.spec?.zone ?? ""),
    dataMac: secret.dataMac,
    sizeBytes: secret.sizeBytes,
    labels: sortedLabels(secret.spec?.labels),
    version: Number(secret.meta?.version ?? 0n),
    createdAt: iso(secret.meta?.createdAt),
    updatedAt: iso(secret.meta?.updatedAt),
  };
}

export interface InfoView {
  nodeId: string;
  clusterId: string;
  role: string;
  locked: boolean;
  state: string;
  addr: string;
  autolock: boolean;
  zone: string;
  leaderNodeId: string;
  leaderAddr: string;
  managers: { nodeId: string; addr: string; leader: boolean; reachable: boolean }[];
  certNotAfter: string;
}

export function infoView(info: InfoResponse): InfoView {
  return {
    nodeId: info.nodeId,
    clusterId: info.clusterId,
    role: roleName(info.role),
    locked: info.locked,
    state: info.state || (info.locked ? "locked" : "inactive"),
    addr: shown(info.addr),
    autolock: info.autolock,
    zone: shown(info.zone),
    leaderNodeId: info.leaderNodeId,
    leaderAddr: shown(info.leaderAddr),
    managers: info.managers.map((m) => ({ nodeId: shown(m.nodeId), addr: shown(m.addr), leader: m.leader, reachable: m.reachable })),
    certNotAfter: info.certNotAfter,
  };
}

/**
 * Docker-style table: upper-case headers, columns padded to the widest cell plus three spaces. Cells
 * are escaped again here, so a caller that forgot a view cannot print a raw newline or escape.
 */
export function renderTable(headers: string[], rawRows: string[][]): string {
  const rows = rawRows.map((r) => r.map(shown));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3)))
      .join("")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

export function capitalize(text: string): string {
  return text.length === 0 ? text : text[0]!.toUpperCase() + text.slice(1);
}
