// Checks of one object's own fields against the limits; cross-object rules (uniqueness, existence,
// zones of attached secrets) are in the transaction code. Every failure is INVALID_ARGUMENT.
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import type { Cluster, ContainerSpec, Node, Secret, ServiceSpec, Task } from "../proto/shoal/v1/objects.js";
import type { KeyValue } from "../proto/shoal/v1/store.js";
import { isValidZone, serviceZone, ZONE_LABEL } from "./constraints.js";
import {
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
  MAX_NAME_CHARS,
  MAX_REPLICAS,
  MAX_SECRET_BYTES,
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
  if (spec.constraints.length > MAX_CONSTRAINTS) throw invalid(`service has more than ${MAX_CONSTRAINTS} constraints`);
  const zone = serviceZone(spec); // parses every constraint
  validateContainerSpec(spec.container, "service");
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
