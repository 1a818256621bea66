// Checks of one object's own fields against the limits; cross-object rules (uniqueness, existence,
// zones of attached secrets) are in the transaction code. Every failure is INVALID_ARGUMENT.
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import { parseImageReference } from "../oci/reference.js";
import {
  NetworkMode,
  RestartCondition,
  ServiceMode,
  UpdateFailureAction,
  type Cluster,
  type ContainerSpec,
  type Node,
  type Resources,
  type RestartPolicy,
  type Secret,
  type ServiceSpec,
  type Task,
  type UpdateConfig,
} from "../proto/shoal/v1/objects.js";
import { ALL_CAPABILITIES, LINUX_CAPABILITIES } from "./capabilities.js";
import type { KeyValue } from "../proto/shoal/v1/store.js";
import { isValidZone, serviceZone, ZONE_LABEL } from "./constraints.js";
import {
  MAX_CAPABILITIES,
  MAX_CONSTRAINTS,
  MAX_CONTAINER_ARGS,
  MAX_CONTAINER_ENV,
  MAX_CONTAINER_SECRETS,
  MAX_CONTAINER_STRING_BYTES,
  MAX_HOSTNAME_CHARS,
  MAX_IMAGE_CHARS,
  MAX_KV_KEY_BYTES,
  MAX_KV_VALUE_BYTES,
  MAX_LABEL_KEY_BYTES,
  MAX_LABEL_VALUE_BYTES,
  MAX_LABELS,
  MAX_MEMORY_LIMIT_BYTES,
  MAX_NAME_CHARS,
  MAX_NANO_CPUS,
  MAX_PIDS_LIMIT,
  MAX_REPLICAS,
  MAX_RESTART_ATTEMPTS,
  MAX_RESTART_WINDOW_MS,
  MAX_SECRET_BYTES,
  MAX_STOP_GRACE_PERIOD_MS,
  MAX_UNIX_ID,
  MAX_WORKDIR_BYTES,
  MAX_WORKLOAD_DELAY_MS,
  MIN_MEMORY_LIMIT_BYTES,
  MIN_NANO_CPUS,
  NAME_PATTERN,
} from "./limits.js";

function invalid(message: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", message);
}

export function validateId(id: string, what: string): void {
  if (!isValidId(id)) throw invalid(`${what} ID must be 25 characters of [0-9a-z]`);
}

export function validateName(name: string, what: string): void {
  if (name.length === 0) throw invalid(`${what} name is empty; give a name`);
  if (name.length > MAX_NAME_CHARS) throw invalid(`${what} name is longer than ${MAX_NAME_CHARS} characters; use a shorter name`);
  if (!NAME_PATTERN.test(name)) {
    throw invalid(`${what} name ${JSON.stringify(name)} must start with a letter or digit and contain only [a-zA-Z0-9_.-]`);
  }
}

export function validateLabels(labels: { [key: string]: string }, what: string): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) throw invalid(`${what} has ${keys.length} labels, more than ${MAX_LABELS}; remove some`);
  for (const key of keys) {
    if (key.length === 0) throw invalid(`${what} has a label with an empty key`);
    if (Buffer.byteLength(key) > MAX_LABEL_KEY_BYTES) throw invalid(`${what} has a label key longer than ${MAX_LABEL_KEY_BYTES} bytes`);
    if (Buffer.byteLength(labels[key]!) > MAX_LABEL_VALUE_BYTES) {
      throw invalid(`${what} label ${JSON.stringify(key.slice(0, 64))} has a value longer than ${MAX_LABEL_VALUE_BYTES} bytes`);
    }
  }
}

function validateStrings(values: string[], maxCount: number, what: string): void {
  if (values.length > maxCount) throw invalid(`${what} has ${values.length} entries, more than ${maxCount}`);
  for (const v of values) {
    if (Buffer.byteLength(v) > MAX_CONTAINER_STRING_BYTES) throw invalid(`${what} has an entry longer than ${MAX_CONTAINER_STRING_BYTES} bytes`);
    // execve takes NUL-terminated strings: a NUL would silently cut the argument short.
    if (v.includes("\0")) throw invalid(`${what} has an entry with a NUL character`);
  }
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** "UID" or "UID:GID", numeric: the executor cannot look names up in an image it has not unpacked. */
const USER_PATTERN = /^(\d{1,10})(?::(\d{1,10}))?$/;
const KNOWN_CAPABILITIES = new Set(LINUX_CAPABILITIES);

function validateEnv(env: string[], what: string): void {
  for (const entry of env) {
    const eq = entry.indexOf("=");
    if (eq <= 0 || !ENV_NAME.test(entry.slice(0, eq))) {
      throw invalid(`${what} env entry ${JSON.stringify(entry.slice(0, 64))} is not NAME=VALUE with a NAME of [A-Za-z0-9_] not starting with a digit`);
    }
  }
}

function validateLimits(limits: Resources | undefined, what: string): void {
  if (limits === undefined) return;
  const { memoryBytes, nanoCpus, pids } = limits;
  if (memoryBytes !== 0n && (memoryBytes < BigInt(MIN_MEMORY_LIMIT_BYTES) || memoryBytes > MAX_MEMORY_LIMIT_BYTES)) {
    throw invalid(`${what} memory limit ${memoryBytes} bytes is outside ${MIN_MEMORY_LIMIT_BYTES} bytes (6 MiB) to 1 PiB; use e.g. 64M or 1G, or 0 for no limit`);
  }
  if (nanoCpus !== 0n && (nanoCpus < MIN_NANO_CPUS || nanoCpus > MAX_NANO_CPUS)) {
    throw invalid(`${what} CPU limit ${nanoCpus} nano-CPUs is outside 0.01 to 1024 cores; use e.g. 0.5, or 0 for no limit`);
  }
  if (pids !== 0n && (pids < 1n || pids > MAX_PIDS_LIMIT)) {
    throw invalid(`${what} pids limit ${pids} is outside 1 to ${MAX_PIDS_LIMIT}; use 0 for no limit`);
  }
}

function validateUser(user: string, what: string): void {
  if (user === "") return;
  const match = USER_PATTERN.exec(user);
  const ids = match === null ? [] : [match[1]!, match[2]].filter((v): v is string => v !== undefined).map(Number);
  if (match === null || ids.some((id) => id > MAX_UNIX_ID)) {
    throw invalid(`${what} user ${JSON.stringify(user.slice(0, 64))} must be UID or UID:GID, numbers from 0 to ${MAX_UNIX_ID}`);
  }
}

function validateCapabilities(spec: ContainerSpec, what: string): void {
  for (const [list, flag] of [
    [spec.capAdd, "cap_add"],
    [spec.capDrop, "cap_drop"],
  ] as const) {
    if (list.length > MAX_CAPABILITIES) throw invalid(`${what} ${flag} has more than ${MAX_CAPABILITIES} entries`);
    for (const cap of list) {
      if (cap === ALL_CAPABILITIES && flag === "cap_drop") continue;
      if (cap === ALL_CAPABILITIES) {
        // Least privilege (DESIGN §7): nothing in Shoal runs a container with every capability.
        throw invalid(`${what} cap_add ALL would give the task every capability; Shoal never runs privileged tasks: add the capabilities it needs by name`);
      }
      if (!KNOWN_CAPABILITIES.has(cap)) throw invalid(`${what} ${flag} ${JSON.stringify(cap.slice(0, 64))} is not a Linux capability name such as CAP_NET_ADMIN`);
    }
  }
  const both = spec.capAdd.filter((cap) => spec.capDrop.includes(cap));
  if (both.length > 0) throw invalid(`${what} both adds and drops ${both.join(", ")}; give each capability in one list only`);
}

function validateWorkdir(dir: string, what: string): void {
  if (dir === "") return;
  if (!dir.startsWith("/")) throw invalid(`${what} working directory ${JSON.stringify(dir.slice(0, 64))} must be an absolute path`);
  if (Buffer.byteLength(dir) > MAX_WORKDIR_BYTES) throw invalid(`${what} working directory is longer than ${MAX_WORKDIR_BYTES} bytes`);
  if (dir.includes("\0")) throw invalid(`${what} working directory has a NUL character`);
}

function validateRestartPolicy(policy: RestartPolicy | undefined): void {
  if (policy === undefined) return;
  if (![RestartCondition.RESTART_CONDITION_ANY, RestartCondition.RESTART_CONDITION_ON_FAILURE, RestartCondition.RESTART_CONDITION_NONE].includes(policy.condition)) {
    throw invalid("service restart condition must be none, on-failure or any");
  }
  if (policy.delayMs > MAX_WORKLOAD_DELAY_MS) throw invalid("service restart delay must be at most 24h");
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 0 || policy.maxAttempts > MAX_RESTART_ATTEMPTS) {
    throw invalid(`service restart max attempts must be a whole number from 0 (unlimited) to ${MAX_RESTART_ATTEMPTS}`);
  }
  if (policy.windowMs > MAX_RESTART_WINDOW_MS) throw invalid("service restart window must be at most 30 days (720h)");
}

function validateUpdateConfig(config: UpdateConfig | undefined, what: "update" | "rollback"): void {
  if (config === undefined) return;
  const actions =
    what === "update"
      ? [UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK, UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE]
      : [UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE];
  if (!actions.includes(config.failureAction)) {
    // A failed rollback has nothing to roll back to (as in Swarm).
    throw invalid(what === "update" ? "service update failure action must be pause, rollback or continue" : "service rollback failure action must be pause or continue");
  }
  if (!Number.isInteger(config.parallelism) || config.parallelism < 0 || config.parallelism > MAX_REPLICAS) {
    throw invalid(`service ${what} parallelism must be a whole number from 0 (the default, 1) to ${MAX_REPLICAS}`);
  }
  if (config.delayMs > MAX_WORKLOAD_DELAY_MS) throw invalid(`service ${what} delay must be at most 24h`);
  if (config.monitorMs > MAX_WORKLOAD_DELAY_MS) throw invalid(`service ${what} monitor period must be at most 24h`);
  if (!Number.isFinite(config.maxFailureRatio) || config.maxFailureRatio < 0 || config.maxFailureRatio > 1) {
    throw invalid(`service ${what} max failure ratio must be a number from 0 to 1`);
  }
}

export function validateContainerSpec(spec: ContainerSpec | undefined, what: string): void {
  if (spec === undefined) return;
  if (spec.image.length > MAX_IMAGE_CHARS) throw invalid(`${what} image reference is longer than ${MAX_IMAGE_CHARS} characters`);
  if (spec.command.length + spec.args.length > MAX_CONTAINER_ARGS) {
    throw invalid(`${what} command and args have more than ${MAX_CONTAINER_ARGS} entries`);
  }
  validateStrings(spec.command, MAX_CONTAINER_ARGS, `${what} command`);
  validateStrings(spec.args, MAX_CONTAINER_ARGS, `${what} args`);
  validateStrings(spec.env, MAX_CONTAINER_ENV, `${what} env`);
  validateEnv(spec.env, what);
  if (/[\s\0]/.test(spec.image)) throw invalid(`${what} image reference contains whitespace or a NUL character`);
  // One home for the reference rule: the OCI client's parser (a reference it cannot pull is refused here).
  if (spec.image !== "") {
    try {
      parseImageReference(spec.image);
    } catch (err) {
      throw invalid(`${what} image: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  validateLimits(spec.limits, what);
  if (![NetworkMode.NETWORK_MODE_ISOLATED, NetworkMode.NETWORK_MODE_HOST].includes(spec.network)) {
    throw invalid(`${what} network must be isolated (none) or host`);
  }
  validateUser(spec.user, what);
  validateCapabilities(spec, what);
  validateWorkdir(spec.dir, what);
  if (spec.stopGracePeriodMs > MAX_STOP_GRACE_PERIOD_MS) throw invalid(`${what} stop grace period must be at most 1h`);
  if (spec.secrets.length > MAX_CONTAINER_SECRETS) throw invalid(`${what} references more than ${MAX_CONTAINER_SECRETS} secrets`);
  const targets = new Set<string>();
  for (const ref of spec.secrets) {
    validateId(ref.secretId, `${what} secret reference`);
    // The target becomes a file name on the worker's tmpfs: the name rules keep it to one path part.
    const target = ref.target === "" ? ref.secretName : ref.target;
    if (target === "") continue; // the reference names no existing secret: reported as NOT_FOUND
    validateName(target, `${what} secret target`);
    if (targets.has(target)) throw invalid(`${what} mounts two secrets at target ${JSON.stringify(target)}; give each a distinct target`);
    targets.add(target);
  }
}

export function validateNode(node: Node): void {
  validateId(node.id, "node");
  if (node.spec !== undefined) {
    validateLabels(node.spec.labels, "node");
    const zone = node.spec.labels[ZONE_LABEL];
    if (zone !== undefined && !isValidZone(zone)) throw invalid("node zone label must be a name of [a-zA-Z0-9_.-] starting with a letter or digit, at most 63 characters");
  }
  if (node.description !== undefined && node.description.hostname.length > MAX_HOSTNAME_CHARS) {
    throw invalid(`node hostname is longer than ${MAX_HOSTNAME_CHARS} characters`);
  }
}

/** Validates a service spec and returns its zone. */
export function validateServiceSpec(spec: ServiceSpec | undefined): string {
  if (spec === undefined) throw invalid("service has no spec; give at least a name");
  validateName(spec.name, "service");
  validateLabels(spec.labels, "service");
  if (!Number.isInteger(spec.replicas) || spec.replicas < 0 || spec.replicas > MAX_REPLICAS) {
    throw invalid(`service replicas must be between 0 and ${MAX_REPLICAS}`);
  }
  if (spec.mode !== ServiceMode.SERVICE_MODE_REPLICATED && spec.mode !== ServiceMode.SERVICE_MODE_GLOBAL) {
    throw invalid("service mode must be replicated or global");
  }
  if (spec.constraints.length > MAX_CONSTRAINTS) throw invalid(`service has more than ${MAX_CONSTRAINTS} constraints`);
  const zone = serviceZone(spec); // parses every constraint
  validateContainerSpec(spec.container, "service");
  validateRestartPolicy(spec.restartPolicy);
  validateUpdateConfig(spec.updateConfig, "update");
  validateUpdateConfig(spec.rollbackConfig, "rollback");
  return zone;
}

export function validateTask(task: Task): void {
  validateId(task.id, "task");
  validateId(task.serviceId, "task's service");
  if (task.nodeId !== "") validateId(task.nodeId, "task's node");
  if (task.zone !== "" && !isValidZone(task.zone)) throw invalid("task zone must be a name of [a-zA-Z0-9_.-] starting with a letter or digit, at most 63 characters");
  validateContainerSpec(task.spec, "task");
}

export function validateSecret(secret: Secret): void {
  validateId(secret.id, "secret");
  const spec = secret.spec;
  if (spec === undefined) throw invalid("secret has no spec; give a name and data");
  validateName(spec.name, "secret");
  validateLabels(spec.labels, "secret");
  if (spec.data.length === 0) throw invalid("secret data is empty; give at least one byte");
  if (spec.data.length > MAX_SECRET_BYTES) {
    throw invalid(`secret data is ${spec.data.length} bytes, more than the limit of ${MAX_SECRET_BYTES} bytes (500 KiB)`);
  }
  if (spec.zone !== "" && !isValidZone(spec.zone)) throw invalid("secret zone must be a name of [a-zA-Z0-9_.-] starting with a letter or digit, at most 63 characters");
}

export function validateCluster(cluster: Cluster): void {
  validateId(cluster.id, "cluster");
  if (cluster.spec !== undefined && cluster.spec.name !== "") validateName(cluster.spec.name, "cluster");
}

export function validateKvKey(key: string): void {
  const bytes = Buffer.byteLength(key);
  if (bytes === 0) throw invalid("key is empty; give a key");
  if (bytes > MAX_KV_KEY_BYTES) throw invalid(`key is ${bytes} bytes, more than ${MAX_KV_KEY_BYTES}; use a shorter key`);
}

export function validateKv(kv: KeyValue): void {
  validateKvKey(kv.key);
  if (kv.value.length > MAX_KV_VALUE_BYTES) {
    throw invalid(`value is ${kv.value.length} bytes, more than ${MAX_KV_VALUE_BYTES}; store less`);
  }
}
