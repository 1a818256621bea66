// The workload flags of `service create` and `service update`, with Docker Swarm's names: parsed
// into a patch before any call (a bad value is exit 2 and the daemon never hears of it), then
// applied to a spec. The server checks every field again (state/validate.ts); these checks give
// the error a flag's name.
import { Command, Option } from "commander";
import { ShoalError } from "../base/errors.js";
import {
  ContainerSpec,
  NetworkMode,
  RestartCondition,
  ServiceMode,
  UpdateFailureAction,
  type ServiceSpec,
  type UpdateConfig,
} from "../proto/shoal/v1/objects.js";
import { ALL_CAPABILITIES, normalizeCapability } from "../state/capabilities.js";
import { isValidZone, parseConstraint } from "../state/constraints.js";
import {
  MAX_MEMORY_LIMIT_BYTES,
  MAX_NANO_CPUS,
  MAX_PIDS_LIMIT,
  MAX_REPLICAS,
  MAX_RESTART_ATTEMPTS,
  MAX_UNIX_ID,
  MIN_MEMORY_LIMIT_BYTES,
  MIN_NANO_CPUS,
} from "../state/limits.js";
import { collect } from "./context.js";
import { parseDurationMs } from "./duration.js";

function invalid(message: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", message);
}

function wholeNumber(text: string, flag: string, max: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) > max) throw invalid(`${flag} "${text}" is not a whole number from 0 to ${max}`);
  return Number(text);
}

export function parseReplicas(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_REPLICAS) {
    throw invalid(`replicas "${text}" is not a whole number from 0 to ${MAX_REPLICAS}`);
  }
  return Number(text);
}

const MEMORY_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** `--limit-memory`: "256M", "1g", "512k", "1.5G", "64MiB", "1048576" (bytes; units are binary, as Docker's). */
export function parseMemoryBytes(text: string, flag = "--limit-memory"): bigint {
  const match = /^(\d+(?:\.\d+)?)([kmgtp]?)(i?b)?$/i.exec(text.trim());
  if (match === null) throw invalid(`${flag} "${text}" is not an amount of memory: use e.g. 64M, 256M or 1G (0: no limit)`);
  const bytes = Math.floor(Number(match[1]) * MEMORY_UNITS[match[2]!.toLowerCase()]!);
  if (bytes === 0) return 0n;
  if (!Number.isSafeInteger(bytes) || bytes < MIN_MEMORY_LIMIT_BYTES || BigInt(bytes) > MAX_MEMORY_LIMIT_BYTES) {
    throw invalid(`${flag} "${text}" is outside 6M to 1P: a task needs at least 6 MiB (0: no limit)`);
  }
  return BigInt(bytes);
}

/** `--limit-cpu 0.5` → 500,000,000 nano-CPUs (at most 9 decimals, from 0.01 to 1024 cores; 0: no limit). */
export function parseNanoCpus(text: string, flag = "--limit-cpu"): bigint {
  const match = /^(\d{1,4})(?:\.(\d{1,9}))?$/.exec(text.trim());
  if (match === null) throw invalid(`${flag} "${text}" is not a number of CPUs: use e.g. 0.5, 1 or 2.25 (0: no limit)`);
  const nano = BigInt(match[1]!) * 1_000_000_000n + BigInt((match[2] ?? "").padEnd(9, "0"));
  if (nano !== 0n && (nano < MIN_NANO_CPUS || nano > MAX_NANO_CPUS)) throw invalid(`${flag} "${text}" is outside 0.01 to 1024 CPUs (0: no limit)`);
  return nano;
}

export function parsePidsLimit(text: string): bigint {
  return BigInt(wholeNumber(text, "--limit-pids", Number(MAX_PIDS_LIMIT)));
}

/** `--user UID[:GID]`, numeric ("" keeps the image's user). */
export function parseUser(text: string): string {
  const match = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(text);
  if (text !== "" && (match === null || Number(match[1]) > MAX_UNIX_ID || Number(match[2] ?? 0) > MAX_UNIX_ID)) {
    throw invalid(`--user "${text}" is not UID or UID:GID (numbers, e.g. 1000 or 1000:1000); user names are not looked up`);
  }
  return text;
}

export function parseWorkdir(text: string): string {
  if (text !== "" && !text.startsWith("/")) throw invalid(`--workdir "${text}" is not an absolute path: use e.g. /srv/app`);
  return text;
}

/** `--network host` shares the host's network; none/default/isolated is the task's own loopback. */
export function parseNetwork(text: string): NetworkMode {
  switch (text) {
    case "host":
      return NetworkMode.NETWORK_MODE_HOST;
    case "none":
    case "default":
    case "isolated":
      return NetworkMode.NETWORK_MODE_ISOLATED;
    default:
      throw invalid(`--network "${text}" is not supported: use host, or none (the default: loopback only); overlay networks are out of scope`);
  }
}

export function parseMode(text: string): ServiceMode {
  if (text === "replicated") return ServiceMode.SERVICE_MODE_REPLICATED;
  if (text === "global") return ServiceMode.SERVICE_MODE_GLOBAL;
  throw invalid(`--mode "${text}" is not replicated or global`);
}

export function parseRestartCondition(text: string): RestartCondition {
  switch (text) {
    case "any":
      return RestartCondition.RESTART_CONDITION_ANY;
    case "on-failure":
      return RestartCondition.RESTART_CONDITION_ON_FAILURE;
    case "none":
      return RestartCondition.RESTART_CONDITION_NONE;
    default:
      throw invalid(`--restart-condition "${text}" is not none, on-failure or any`);
  }
}

export function parseFailureAction(text: string, flag: "--update-failure-action" | "--rollback-failure-action"): UpdateFailureAction {
  if (text === "pause") return UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE;
  if (text === "continue") return UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE;
  if (text === "rollback" && flag === "--update-failure-action") return UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK;
  throw invalid(flag === "--update-failure-action" ? `${flag} "${text}" is not pause, rollback or continue` : `${flag} "${text}" is not pause or continue`);
}

export function parseFailureRatio(text: string, flag: string): number {
  const ratio = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!(ratio >= 0 && ratio <= 1)) throw invalid(`${flag} "${text}" is not a fraction from 0 to 1, e.g. 0.2`);
  return ratio;
}

/** `--constraint EXPR`, checked with the server's own parser so the user hears of a typo at once. */
export function parseConstraintFlag(text: string): string {
  parseConstraint(text);
  return text;
}

export function parseZone(text: string): string {
  if (!isValidZone(text)) throw invalid(`--zone "${text}" is not a zone name: letters, digits, . _ - starting with a letter or digit, at most 63 characters`);
  return text;
}

export function parseEnv(text: string, flag = "--env"): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(text)) throw invalid(`${flag} "${text}" is not NAME=VALUE`);
  return text;
}

/** `--secret NAME`, `--secret NAME,target=FILE` or `--secret source=NAME,target=FILE`. */
export function parseSecretFlag(text: string, flag = "--secret"): { source: string; target: string } {
  const form = `${flag} "${text}" must be NAME, NAME,target=FILE or source=NAME,target=FILE`;
  const parts = text.split(",");
  let source = "";
  let target = "";
  parts.forEach((part, i) => {
    const eq = part.indexOf("=");
    if (eq < 0 && i === 0) source = part;
    else if (eq > 0 && ["source", "src"].includes(part.slice(0, eq))) source = part.slice(eq + 1);
    else if (eq > 0 && part.slice(0, eq) === "target") target = part.slice(eq + 1);
    else if (eq > 0) throw invalid(`${form} (${JSON.stringify(part.slice(0, eq))} is not supported)`);
    else throw invalid(form);
  });
  target ||= source;
  // The target becomes one file name under the task's secrets directory.
  if (source === "" || /[\/\\\0]|^\.\.?$/.test(target)) throw invalid(`${form}, with FILE a plain file name`);
  return { source, target };
}

/** The flags both commands take; undefined leaves the field as it is. */
export interface WorkloadFlagValues {
  replicas?: string;
  zone?: string;
  image?: string;
  workdir?: string;
  user?: string;
  readOnly?: boolean;
  capAdd: string[];
  capDrop: string[];
  network?: string;
  limitMemory?: string;
  limitCpu?: string;
  limitPids?: string;
  restartCondition?: string;
  restartDelay?: string;
  restartMaxAttempts?: string;
  restartWindow?: string;
  updateParallelism?: string;
  updateDelay?: string;
  updateFailureAction?: string;
  updateMonitor?: string;
  updateMaxFailureRatio?: string;
  rollbackParallelism?: string;
  rollbackDelay?: string;
  rollbackFailureAction?: string;
  rollbackMonitor?: string;
  rollbackMaxFailureRatio?: string;
  stopGracePeriod?: string;
}

/** Adds the shared workload flags to `service create` or `service update`. */
export function addWorkloadOptions(command: Command, forUpdate: boolean): Command {
  command
    .option("--replicas <n>", "number of tasks (replicated mode)")
    .option("--zone <zone>", "security zone: tasks run only on nodes of this zone")
    .option("--image <ref>", "image reference HOST[:PORT]/NAME[:TAG][@sha256:...] (without it: a process task)")
    .option("--workdir <dir>", "working directory inside the task (absolute)")
    .option("--user <uid[:gid]>", "run as this numeric user (and group)")
    .option("--read-only", "mount the task's root filesystem read-only");
  if (forUpdate) command.option("--no-read-only", "mount the root filesystem read-write again");
  return command
    .option("--cap-add <cap>", "add a Linux capability (e.g. NET_ADMIN); repeatable", collect, [])
    .option("--cap-drop <cap>", "drop a Linux capability (ALL drops every one); repeatable", collect, [])
    .option("--network <mode>", "host (share the host's network: an explicit opt-in) or none (the default: loopback only)")
    .option("--limit-memory <bytes>", "memory limit, e.g. 256M or 1G (0: none)")
    .option("--limit-cpu <cpus>", "CPU limit in cores, e.g. 0.5 (0: none)")
    .option("--limit-pids <n>", "maximum number of processes (0: none)")
    .addOption(new Option("--restart-condition <condition>", "restart tasks when they end: none, on-failure or any (default any)"))
    .option("--restart-delay <duration>", "wait between a task's end and its restart (default 5s)")
    .option("--restart-max-attempts <n>", "restarts allowed within the window (0: unlimited)")
    .option("--restart-window <duration>", "the window the attempts count in (0: the service's life)")
    .option("--update-parallelism <n>", "tasks updated at once (default 1)")
    .option("--update-delay <duration>", "wait between updating batches")
    .option("--update-failure-action <action>", "pause, rollback or continue when an updated task fails (default pause)")
    .option("--update-monitor <duration>", "how long each updated task is watched for failure (default 5s)")
    .option("--update-max-failure-ratio <ratio>", "fraction of updated tasks that may fail (0 to 1)")
    .option("--rollback-parallelism <n>", "tasks rolled back at once (default 1)")
    .option("--rollback-delay <duration>", "wait between rolling back batches")
    .option("--rollback-failure-action <action>", "pause or continue when a rolled-back task fails (default pause)")
    .option("--rollback-monitor <duration>", "how long each rolled-back task is watched for failure")
    .option("--rollback-max-failure-ratio <ratio>", "fraction of rolled-back tasks that may fail (0 to 1)")
    .option("--stop-grace-period <duration>", "time between SIGTERM and SIGKILL when a task stops (default 10s)");
}

type UpdateConfigPatch = { [K in keyof UpdateConfig]?: UpdateConfig[K] };

/** What the flags change, parsed; applying it cannot fail. */
export interface WorkloadPatch {
  replicas?: number;
  zone?: string;
  container: { [K in "image" | "dir" | "user" | "readOnly" | "network" | "stopGracePeriodMs"]?: ContainerSpec[K] };
  capAdd: string[];
  capDrop: string[];
  limits: { memoryBytes?: bigint; nanoCpus?: bigint; pids?: bigint };
  restart: { condition?: RestartCondition; delayMs?: bigint; maxAttempts?: number; windowMs?: bigint };
  update: UpdateConfigPatch;
  rollback: UpdateConfigPatch;
  /** How many fields the flags name (0: nothing to update). */
  count: number;
}

function definedCount(object: object): number {
  return Object.values(object).filter((v) => v !== undefined).length;
}

function withoutUndefined<T extends object>(object: T): T {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as T;
}

function updateConfigPatch(prefix: "update" | "rollback", v: WorkloadFlagValues): UpdateConfigPatch {
  const get = (name: "Parallelism" | "Delay" | "FailureAction" | "Monitor" | "MaxFailureRatio"): string | undefined =>
    v[`${prefix}${name}` as keyof WorkloadFlagValues] as string | undefined;
  const flag = (name: string): string => `--${prefix}-${name}`;
  const map = <T>(text: string | undefined, parse: (t: string) => T): T | undefined => (text === undefined ? undefined : parse(text));
  return withoutUndefined({
    parallelism: map(get("Parallelism"), (t) => wholeNumber(t, flag("parallelism"), MAX_REPLICAS)),
    delayMs: map(get("Delay"), (t) => parseDurationMs(t, flag("delay"))),
    failureAction: map(get("FailureAction"), (t) => parseFailureAction(t, flag("failure-action") as "--update-failure-action")),
    monitorMs: map(get("Monitor"), (t) => parseDurationMs(t, flag("monitor"))),
    maxFailureRatio: map(get("MaxFailureRatio"), (t) => parseFailureRatio(t, flag("max-failure-ratio"))),
  });
}

export function parseWorkloadFlags(v: WorkloadFlagValues): WorkloadPatch {
  const map = <T>(text: string | undefined, parse: (t: string) => T): T | undefined => (text === undefined ? undefined : parse(text));
  const capsOf = (list: string[], flag: "--cap-add" | "--cap-drop"): string[] =>
    list.map((text) => {
      const cap = normalizeCapability(text, flag);
      if (cap === ALL_CAPABILITIES && flag === "--cap-add") {
        throw invalid("--cap-add ALL would give the tasks every capability; Shoal never runs privileged tasks: add the ones they need by name");
      }
      return cap;
    });
  const patch: WorkloadPatch = {
    replicas: map(v.replicas, parseReplicas),
    zone: map(v.zone, parseZone),
    container: withoutUndefined({
      image: v.image,
      dir: map(v.workdir, parseWorkdir),
      user: map(v.user, parseUser),
      readOnly: v.readOnly,
      network: map(v.network, parseNetwork),
      stopGracePeriodMs: map(v.stopGracePeriod, (t) => parseDurationMs(t, "--stop-grace-period")),
    }),
    capAdd: capsOf(v.capAdd, "--cap-add"),
    capDrop: capsOf(v.capDrop, "--cap-drop"),
    limits: withoutUndefined({
      memoryBytes: map(v.limitMemory, (t) => parseMemoryBytes(t)),
      nanoCpus: map(v.limitCpu, (t) => parseNanoCpus(t)),
      pids: map(v.limitPids, parsePidsLimit),
    }),
    restart: withoutUndefined({
      condition: map(v.restartCondition, parseRestartCondition),
      delayMs: map(v.restartDelay, (t) => parseDurationMs(t, "--restart-delay")),
      maxAttempts: map(v.restartMaxAttempts, (t) => wholeNumber(t, "--restart-max-attempts", MAX_RESTART_ATTEMPTS)),
      windowMs: map(v.restartWindow, (t) => parseDurationMs(t, "--restart-window")),
    }),
    update: updateConfigPatch("update", v),
    rollback: updateConfigPatch("rollback", v),
    count: 0,
  };
  const both = patch.capAdd.filter((cap) => patch.capDrop.includes(cap));
  if (both.length > 0) throw invalid(`--cap-add and --cap-drop both name ${both.join(", ")}: give each capability once`);
  patch.count =
    definedCount({ replicas: patch.replicas, zone: patch.zone }) +
    definedCount(patch.container) +
    patch.capAdd.length +
    patch.capDrop.length +
    definedCount(patch.limits) +
    definedCount(patch.restart) +
    definedCount(patch.update) +
    definedCount(patch.rollback);
  return patch;
}

const EMPTY_UPDATE_CONFIG: UpdateConfig = { parallelism: 0, delayMs: 0n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, monitorMs: 0n, maxFailureRatio: 0 };

/** Applies the patch to `spec` (which has a container). Capabilities follow Docker: adding one un-drops it and dropping one un-adds it. */
export function applyWorkloadPatch(spec: ServiceSpec, patch: WorkloadPatch): void {
  if (patch.replicas !== undefined) {
    if (spec.mode === ServiceMode.SERVICE_MODE_GLOBAL) throw invalid("--replicas applies only to replicated services; a global service runs one task per eligible node");
    spec.replicas = patch.replicas;
  }
  if (patch.zone !== undefined) spec.zone = patch.zone;
  const container: ContainerSpec = (spec.container ??= ContainerSpec.fromPartial({}));
  Object.assign(container, patch.container);
  for (const cap of patch.capAdd) {
    container.capDrop = container.capDrop.filter((c) => c !== cap);
    if (!container.capAdd.includes(cap)) container.capAdd.push(cap);
  }
  for (const cap of patch.capDrop) {
    container.capAdd = container.capAdd.filter((c) => c !== cap);
    if (!container.capDrop.includes(cap)) container.capDrop.push(cap);
  }
  if (definedCount(patch.limits) > 0) container.limits = { memoryBytes: 0n, nanoCpus: 0n, pids: 0n, ...container.limits, ...patch.limits };
  if (definedCount(patch.restart) > 0) {
    spec.restartPolicy = { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 0n, maxAttempts: 0, windowMs: 0n, ...spec.restartPolicy, ...patch.restart };
  }
  if (definedCount(patch.update) > 0) spec.updateConfig = { ...EMPTY_UPDATE_CONFIG, ...spec.updateConfig, ...patch.update };
  if (definedCount(patch.rollback) > 0) spec.rollbackConfig = { ...EMPTY_UPDATE_CONFIG, ...spec.rollbackConfig, ...patch.rollback };
}
