// Placement constraints (`node.labels.K==V`, `node.role==manager`, ...) and security zones
// (DESIGN rule 7): parsed and validated here so the store, scheduler and dispatcher agree.
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";
import { DEFAULT_ZONE, isValidZone } from "../ca/index.js";
import { NodeRole, type Node, type ServiceSpec } from "../proto/shoal/v1/objects.js";
import { MAX_CONSTRAINT_CHARS, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES } from "./limits.js";

// One zone rule for the store and the CA: a zone the store accepts must fit the certificate's SPIFFE
// URI, or a node labelled with it could never get or renew a certificate.
export { DEFAULT_ZONE, isValidZone };
export const ZONE_LABEL = "zone";

export type Constraint =
  | { field: "label"; key: string; op: "==" | "!="; value: string }
  /** A node-reported engine label: untrusted, so it never decides a zone (serviceZone ignores it). */
  | { field: "engine_label"; key: string; op: "==" | "!="; value: string }
  | { field: "role"; op: "==" | "!="; value: "manager" | "worker" }
  | { field: "id"; op: "==" | "!="; value: string }
  | { field: "hostname"; op: "==" | "!="; value: string };

function bad(expr: string, why: string): ShoalError {
  return new ShoalError(
    "INVALID_ARGUMENT",
    `constraint ${JSON.stringify(expr.slice(0, MAX_CONSTRAINT_CHARS))} is invalid: ${why}; ` +
      `use node.labels.KEY==VALUE, node.labels.KEY!=VALUE, engine.labels.KEY==VALUE, node.role==manager|worker, node.id==ID or node.hostname==NAME`,
  );
}

/** Parses one constraint expression; throws INVALID_ARGUMENT with the accepted forms on bad input. */
export function parseConstraint(expr: string): Constraint {
  if (typeof expr !== "string") throw bad(String(expr), "it is not a string");
  if (expr.length > MAX_CONSTRAINT_CHARS) throw bad(expr, `it is longer than ${MAX_CONSTRAINT_CHARS} characters`);
  const eq = expr.indexOf("==");
  const ne = expr.indexOf("!=");
  const at = eq < 0 ? ne : ne < 0 ? eq : Math.min(eq, ne);
  if (at < 0) throw bad(expr, "it has no == or != operator");
  const op = expr.slice(at, at + 2) as "==" | "!=";
  const lhs = expr.slice(0, at).trim();
  const value = expr.slice(at + 2).trim();
  if (value.includes("==") || value.includes("!=")) throw bad(expr, "it has more than one operator");
  if (value === "") throw bad(expr, "the value is empty");
  if (/\s/.test(value)) throw bad(expr, "the value contains whitespace");
  if (lhs.startsWith("node.labels.")) {
    const key = lhs.slice("node.labels.".length);
    if (key === "" || /\s/.test(key)) throw bad(expr, "the label key is empty or contains whitespace");
    if (Buffer.byteLength(key) > MAX_LABEL_KEY_BYTES) throw bad(expr, `the label key is longer than ${MAX_LABEL_KEY_BYTES} bytes`);
    if (Buffer.byteLength(value) > MAX_LABEL_VALUE_BYTES) throw bad(expr, `the value is longer than ${MAX_LABEL_VALUE_BYTES} bytes`);
    if (key === ZONE_LABEL && !isValidZone(value)) throw bad(expr, "a zone must be a name of [a-zA-Z0-9_.-] starting with a letter or digit, at most 63 characters");
    return { field: "label", key, op, value };
  }
  if (lhs.startsWith("engine.labels.")) {
    const key = lhs.slice("engine.labels.".length);
    if (key === "" || /\s/.test(key)) throw bad(expr, "the label key is empty or contains whitespace");
    if (Buffer.byteLength(key) > MAX_LABEL_KEY_BYTES) throw bad(expr, `the label key is longer than ${MAX_LABEL_KEY_BYTES} bytes`);
    if (Buffer.byteLength(value) > MAX_LABEL_VALUE_BYTES) throw bad(expr, `the value is longer than ${MAX_LABEL_VALUE_BYTES} bytes`);
    return { field: "engine_label", key, op, value };
  }
  switch (lhs) {
    case "node.role":
      if (value !== "manager" && value !== "worker") throw bad(expr, "node.role must be manager or worker");
      return { field: "role", op, value };
    case "node.id":
      if (!isValidId(value)) throw bad(expr, "node.id must be 25 characters of [0-9a-z]");
      return { field: "id", op, value };
    case "node.hostname":
      return { field: "hostname", op, value };
    default:
      throw bad(expr, `unknown attribute ${JSON.stringify(lhs.slice(0, 64))}`);
  }
}

/** A node's security zone: its manager-set `zone` label, or "default". */
export function nodeZone(node: Pick<Node, "spec">): string {
  const zone = node.spec?.labels?.[ZONE_LABEL];
  return zone === undefined || zone === "" ? DEFAULT_ZONE : zone;
}

function nodeRoleName(node: Node): "manager" | "worker" | "" {
  // The certificate's role decides; a node whose certificate is not issued yet goes by its spec.
  const role = node.role !== NodeRole.NODE_ROLE_UNSPECIFIED ? node.role : (node.spec?.desiredRole ?? NodeRole.NODE_ROLE_UNSPECIFIED);
  return role === NodeRole.NODE_ROLE_MANAGER ? "manager" : role === NodeRole.NODE_ROLE_WORKER ? "worker" : "";
}

// A label named "constructor" or "__proto__" must not find Object.prototype's members.
function ownValue(map: { [key: string]: string } | undefined, key: string): string | undefined {
  return map !== undefined && Object.hasOwn(map, key) ? map[key] : undefined;
}

/** Whether one node satisfies one parsed constraint. */
export function matchConstraint(node: Node, c: Constraint): boolean {
  return matchOne(node, c);
}

function matchOne(node: Node, c: Constraint): boolean {
  let actual: string | undefined;
  switch (c.field) {
    case "label":
      actual = ownValue(node.spec?.labels, c.key);
      break;
    case "engine_label":
      actual = ownValue(node.description?.engineLabels, c.key);
      break;
    case "role":
      actual = nodeRoleName(node);
      break;
    case "id":
      actual = node.id;
      break;
    case "hostname":
      actual = node.description?.hostname;
      break;
  }
  // A missing attribute satisfies != and fails ==, as in Swarm.
  const equal = actual !== undefined && actual === c.value;
  return c.op === "==" ? equal : !equal;
}

/** True when the node satisfies every constraint. Strings are parsed (and may throw INVALID_ARGUMENT). */
export function nodeMatches(node: Node, constraints: readonly (Constraint | string)[]): boolean {
  for (const c of constraints) {
    if (!matchOne(node, typeof c === "string" ? parseConstraint(c) : c)) return false;
  }
  return true;
}

/**
 * A service's zone: `spec.zone`, or Z from a `node.labels.zone==Z` constraint, or "default".
 * Two different zones is a contradiction the operator must resolve: INVALID_ARGUMENT.
 */
export function serviceZone(spec: Pick<ServiceSpec, "zone" | "constraints">): string {
  const zones = new Set<string>();
  if (spec.zone !== "") {
    if (!isValidZone(spec.zone)) {
      throw new ShoalError("INVALID_ARGUMENT", "the service zone must be a name of [a-zA-Z0-9_.-] starting with a letter or digit, at most 63 characters");
    }
    zones.add(spec.zone);
  }
  for (const expr of spec.constraints) {
    const c = parseConstraint(expr);
    if (c.field === "label" && c.key === ZONE_LABEL && c.op === "==") zones.add(c.value);
  }
  if (zones.size > 1) {
    throw new ShoalError(
      "INVALID_ARGUMENT",
      `the service names more than one zone (${[...zones].sort().join(", ")}); give exactly one zone with --zone or a node.labels.zone== constraint`,
    );
  }
  const [zone] = zones;
  return zone ?? DEFAULT_ZONE;
}

/** Placement check for a task of this service: same zone as the node, and every constraint. */
export function nodeMatchesService(node: Node, spec: ServiceSpec): boolean {
  return nodeZone(node) === serviceZone(spec) && nodeMatches(node, spec.constraints);
}
