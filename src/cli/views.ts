// What `--format json` prints and what the tables are made of: plain objects with camelCase fields
// that are always present (empty string, 0 or [] rather than missing), full IDs, lower-case enum
// names, ISO-8601 times. Secret data is never part of any view. Every string that came from a node
// or a user is shown with control and bidi-control characters escaped (`\x1b`, `\u202e`), in tables
// and JSON alike, so stored text can neither drive the terminal nor forge a row.
import { escapeUnsafeChars as shown } from "../base/text.js";
import {
  ManagerStatus_Reachability,
  NetworkMode,
  NodeAvailability,
  NodeRole,
  NodeState,
  RestartCondition,
  ServiceMode,
  TaskState,
  UpdateFailureAction,
  UpdateState,
  type Node,
  type RegistryAuth,
  type Secret,
  type Service,
  type ServiceSpec,
  type Task,
  type UpdateConfig,
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

const CPU_NANOS = 1_000_000_000n;

/** Nano-CPUs as a decimal number of cores: 500000000 → "0.5". */
export function cpusText(nanoCpus: bigint): string {
  const whole = nanoCpus / CPU_NANOS;
  const fraction = (nanoCpus % CPU_NANOS).toString().padStart(9, "0").replace(/0+$/, "");
  return fraction === "" ? whole.toString() : `${whole}.${fraction}`;
}

/** Milliseconds the way the flags take them: 90000 → "1m30s", 500 → "500ms", 0 → "0s". */
export function durationText(ms: bigint | number): string {
  let rest = BigInt(ms);
  if (rest === 0n) return "0s";
  const parts: string[] = [];
  for (const [unit, size] of [["h", 3_600_000n], ["m", 60_000n], ["s", 1_000n], ["ms", 1n]] as const) {
    if (rest >= size) {
      parts.push(`${rest / size}${unit}`);
      rest %= size;
    }
  }
  return parts.join("");
}

export function serviceModeName(mode: ServiceMode | undefined): string {
  return mode === ServiceMode.SERVICE_MODE_GLOBAL ? "global" : "replicated";
}

/** "host" (the host's network, an explicit opt-in) or "isolated" (the task's own loopback only). */
export function networkName(mode: NetworkMode | undefined): string {
  return mode === NetworkMode.NETWORK_MODE_HOST ? "host" : "isolated";
}

function restartConditionName(condition: RestartCondition | undefined): string {
  if (condition === RestartCondition.RESTART_CONDITION_NONE) return "none";
  if (condition === RestartCondition.RESTART_CONDITION_ON_FAILURE) return "on-failure";
  return "any";
}

function failureActionName(action: UpdateFailureAction | undefined): string {
  if (action === UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK) return "rollback";
  if (action === UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE) return "continue";
  return "pause";
}

export function updateStateName(state: UpdateState | undefined): string {
  if (state === undefined || state === UpdateState.UNRECOGNIZED) return "";
  return UpdateState[state].replace(/^UPDATE_STATE_/, "").toLowerCase().replace(/_/g, "-").replace(/^none$/, "");
}

function updateConfigView(config: UpdateConfig | undefined) {
  return {
    parallelism: config?.parallelism ?? 0,
    delay: durationText(config?.delayMs ?? 0n),
    failureAction: failureActionName(config?.failureAction),
    monitor: durationText(config?.monitorMs ?? 0n),
    maxFailureRatio: config?.maxFailureRatio ?? 0,
  };
}

/** A service spec as `service inspect` shows it: every field, units in the flags' own forms, no secret data. */
export function serviceSpecView(spec: ServiceSpec | undefined) {
  const container = spec?.container;
  const limits = container?.limits;
  return {
    name: shown(spec?.name ?? ""),
    mode: serviceModeName(spec?.mode),
    replicas: spec?.replicas ?? 0,
    zone: shown(spec?.zone ?? ""),
    constraints: shownAll(spec?.constraints),
    labels: sortedLabels(spec?.labels),
    image: shown(container?.image ?? ""),
    command: shownAll(container?.command),
    args: shownAll(container?.args),
    env: shownAll(container?.env),
    workdir: shown(container?.dir ?? ""),
    user: shown(container?.user ?? ""),
    readOnly: container?.readOnly ?? false,
    capAdd: shownAll(container?.capAdd),
    capDrop: shownAll(container?.capDrop),
    network: networkName(container?.network),
    limits: {
      memoryBytes: Number(limits?.memoryBytes ?? 0n),
      cpus: cpusText(limits?.nanoCpus ?? 0n),
      pids: Number(limits?.pids ?? 0n),
    },
    secrets: (container?.secrets ?? []).map((s) => ({ secretId: shown(s.secretId), secretName: shown(s.secretName), target: shown(s.target || s.secretName) })),
    stopGracePeriod: durationText(container?.stopGracePeriodMs ?? 0n),
    restartPolicy: {
      condition: restartConditionName(spec?.restartPolicy?.condition),
      delay: durationText(spec?.restartPolicy?.delayMs ?? 0n),
      maxAttempts: spec?.restartPolicy?.maxAttempts ?? 0,
      window: durationText(spec?.restartPolicy?.windowMs ?? 0n),
    },
    updateConfig: updateConfigView(spec?.updateConfig),
    rollbackConfig: updateConfigView(spec?.rollbackConfig),
  };
}
export type ServiceSpecView = ReturnType<typeof serviceSpecView>;

/** Tasks that count for a service's REPLICAS column: running = RUNNING and meant to be. */
export function replicaCounts(service: Service, tasks: readonly Task[]): { running: number; desired: number } {
  const own = tasks.filter((t) => t.serviceId === service.id && t.desiredState === TaskState.TASK_STATE_RUNNING);
  const running = own.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).length;
  // A global service's desired count is its eligible nodes, which the orchestrator knows: one task each.
  const desired = service.pendingDelete ? 0 : service.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL ? own.length : (service.spec?.replicas ?? 0);
  return { running, desired };
}

export interface ServiceView {
  id: string;
  name: string;
  mode: string;
  replicas: number;
  desiredTasks: number;
  runningTasks: number;
  image: string;
  command: string[];
  args: string[];
  env: string[];
  zone: string;
  network: string;
  constraints: string[];
  secrets: { secretId: string; secretName: string; target: string }[];
  labels: Record<string, string>;
  /** `service rm` was given: the tasks are stopping and the service goes when they have. */
  pendingDelete: boolean;
  updateState: string;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export function serviceView(service: Service, tasks: readonly Task[]): ServiceView {
  const spec = serviceSpecView(service.spec);
  const { running, desired } = replicaCounts(service, tasks);
  return {
    id: service.id,
    name: spec.name,
    mode: spec.mode,
    replicas: spec.replicas,
    desiredTasks: desired,
    runningTasks: running,
    image: spec.image,
    command: spec.command,
    args: spec.args,
    env: spec.env,
    zone: spec.zone,
    network: spec.network,
    constraints: spec.constraints,
    secrets: spec.secrets,
    labels: spec.labels,
    pendingDelete: service.pendingDelete,
    updateState: updateStateName(service.updateStatus?.state),
    version: Number(service.meta?.version ?? 0n),
    createdAt: iso(service.meta?.createdAt),
    updatedAt: iso(service.meta?.updatedAt),
  };
}

/** `service ls`: the REPLICAS cell says running/desired, and marks a service being removed. */
export function serviceRow(v: ServiceView): string[] {
  const replicas = `${v.runningTasks}/${v.desiredTasks}${v.pendingDelete ? " (removing)" : ""}`;
  return [v.id, v.name, v.mode, replicas, v.image || "(process)", v.zone || "default"];
}
export const SERVICE_HEADERS = ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "ZONE"];

export interface ServiceInspectView {
  id: string;
  spec: ServiceSpecView;
  /** What `service rollback` returns to (null: never updated). */
  previousSpec: ServiceSpecView | null;
  specVersion: number;
  /** The manifest digests the leader resolved the image to, as the tasks meant to run carry them. */
  taskImageDigests: string[];
  updateStatus: { state: string; message: string; startedAt: string; completedAt: string };
  pendingDelete: boolean;
  desiredTasks: number;
  runningTasks: number;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export function serviceInspectView(service: Service, tasks: readonly Task[]): ServiceInspectView {
  const { running, desired } = replicaCounts(service, tasks);
  const status = service.updateStatus;
  return {
    id: service.id,
    spec: serviceSpecView(service.spec),
    previousSpec: service.previousSpec === undefined ? null : serviceSpecView(service.previousSpec),
    specVersion: Number(service.specVersion),
    taskImageDigests: [
      ...new Set(tasks.filter((t) => t.serviceId === service.id && t.desiredState === TaskState.TASK_STATE_RUNNING && t.spec?.imageDigest).map((t) => shown(t.spec!.imageDigest))),
    ].sort(),
    updateStatus: { state: updateStateName(status?.state), message: shown(status?.message ?? ""), startedAt: iso(status?.startedAt), completedAt: iso(status?.completedAt) },
    pendingDelete: service.pendingDelete,
    desiredTasks: desired,
    runningTasks: running,
    version: Number(service.meta?.version ?? 0n),
    createdAt: iso(service.meta?.createdAt),
    updatedAt: iso(service.meta?.updatedAt),
  };
}

export interface TaskView {
  id: string;
  /** `service.slot` (replicated) or `service.nodeID` (global), as Docker names tasks. */
  name: string;
  serviceId: string;
  serviceName: string;
  slot: number;
  nodeId: string;
  nodeHostname: string;
  image: string;
  imageDigest: string;
  network: string;
  desiredState: string;
  state: string;
  message: string;
  /** Why the task is pending, failed or rejected ("" when it is fine). */
  error: string;
  exitCode: number;
  zone: string;
  specVersion: number;
  /** When the orchestrator made the task. */
  createdAt: string;
  /** When the task reached its current state. */
  updatedAt: string;
}

const EXPLAINED_STATES = new Set([TaskState.TASK_STATE_PENDING, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_ORPHANED]);

export function taskView(task: Task, hostnameOf: (nodeId: string) => string): TaskView {
  const state = task.status?.state;
  const message = task.status?.message ?? "";
  const err = task.status?.err ?? "";
  return {
    id: task.id,
    name: shown(task.slot > 0 || task.nodeId === "" ? `${task.serviceName}.${task.slot}` : `${task.serviceName}.${task.nodeId}`),
    serviceId: task.serviceId,
    serviceName: shown(task.serviceName),
    slot: task.slot,
    nodeId: task.nodeId,
    nodeHostname: task.nodeId === "" ? "" : shown(hostnameOf(task.nodeId)),
    image: shown(task.spec?.image ?? ""),
    imageDigest: shown(task.spec?.imageDigest ?? ""),
    network: networkName(task.spec?.network),
    desiredState: taskStateName(task.desiredState),
    state: taskStateName(state),
    message: shown(message),
    error: shown(err !== "" ? err : state !== undefined && EXPLAINED_STATES.has(state) ? message : ""),
    exitCode: task.status?.exitCode ?? 0,
    zone: shown(task.zone),
    specVersion: Number(task.specVersion),
    createdAt: iso(task.meta?.createdAt),
    updatedAt: iso(task.status?.timestamp ?? task.meta?.updatedAt),
  };
}

/** "5 seconds ago", "3 minutes ago", as Docker's CURRENT STATE column says it. */
export function ago(thenIso: string, nowMs: number): string {
  if (thenIso === "") return "";
  const seconds = Math.max(0, Math.floor((nowMs - Date.parse(thenIso)) / 1000));
  const say = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? "" : "s"} ago`;
  if (seconds < 1) return "less than a second ago";
  if (seconds < 60) return say(seconds, "second");
  if (seconds < 3600) return say(Math.floor(seconds / 60), "minute");
  if (seconds < 86_400) return say(Math.floor(seconds / 3600), "hour");
  return say(Math.floor(seconds / 86_400), "day");
}

/**
 * Rows of `service ps` / `node ps`: tasks grouped by slot (or node, for global services), the
 * current one first and its predecessors under it marked `\_`, as Docker shows the history.
 */
export function taskRows(views: readonly TaskView[], opts: { nowMs: number; noTrunc: boolean }): string[][] {
  const groupOf = (v: TaskView): string => `${v.serviceName}\u0000${v.slot > 0 ? String(v.slot).padStart(10, "0") : v.nodeId}`;
  const sorted = [...views].sort(
    (a, b) =>
      groupOf(a).localeCompare(groupOf(b)) ||
      Number(b.desiredState === "running") - Number(a.desiredState === "running") ||
      b.updatedAt.localeCompare(a.updatedAt) ||
      a.id.localeCompare(b.id),
  );
  const cut = (text: string, max: number): string => (opts.noTrunc || text.length <= max ? text : `${text.slice(0, max - 1)}…`);
  // IDs are cut to 12 characters, as Docker does: a unique prefix that every command accepts.
  const shortId = (text: string): string => (opts.noTrunc ? text : text.slice(0, 12));
  return sorted.map((v, i) => {
    const follows = i > 0 && groupOf(sorted[i - 1]!) === groupOf(v);
    const name = opts.noTrunc || v.slot > 0 || v.nodeId === "" ? v.name : `${v.serviceName}.${v.nodeId.slice(0, 12)}`;
    const current = `${capitalize(v.state)} ${ago(v.updatedAt, opts.nowMs)}`.trim();
    return [
      shortId(v.id),
      follows ? ` \\_ ${name}` : name,
      cut(v.image || "(process)", 40),
      v.nodeHostname || shortId(v.nodeId),
      v.zone || "default",
      v.network,
      capitalize(v.desiredState),
      current,
      cut(v.error, 60),
    ];
  });
}
export const TASK_HEADERS = ["ID", "NAME", "IMAGE", "NODE", "ZONE", "NETWORK", "DESIRED STATE", "CURRENT STATE", "ERROR"];

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

export interface RegistryView {
  registry: string;
  username: string;
  /** Whether the managers trust a CA of its own for this registry. */
  ownCa: boolean;
  updatedAt: string;
}

/** Field by field: a password a buggy server sent back would still not be printed. */
export function registryView(auth: RegistryAuth): RegistryView {
  return { registry: shown(auth.registry), username: shown(auth.username), ownCa: auth.caPem !== "", updatedAt: iso(auth.updatedAt) };
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
