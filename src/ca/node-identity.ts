// The identity a node certificate carries (DESIGN.md §2): cluster in O, role in OU, node ID in CN,
// and the same facts plus the security zone in a SPIFFE URI SAN.
import { ShoalError } from "../base/errors.js";
import { isValidId } from "../base/ids.js";

export const NODE_ROLES = ["swarm-manager", "swarm-worker"] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

export const DEFAULT_ZONE = "default";
// A zone is a node label value that ends up in a URI path, so it is kept to a safe alphabet.
const ZONE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface NodeIdentity {
  nodeId: string;
  clusterId: string;
  role: NodeRole;
  zone: string;
}

export function isNodeRole(value: unknown): value is NodeRole {
  return value === "swarm-manager" || value === "swarm-worker";
}

export function isValidZone(value: unknown): value is string {
  return typeof value === "string" && ZONE_PATTERN.test(value);
}

/** Checks issuance arguments; INVALID_ARGUMENT names the bad field. */
export function checkIdentityArguments(args: { nodeId: unknown; clusterId: unknown; role: unknown; zone?: unknown }): NodeIdentity {
  if (!isValidId(args.nodeId)) throw new ShoalError("INVALID_ARGUMENT", "nodeId must be 25 characters of [0-9a-z]");
  if (!isValidId(args.clusterId)) throw new ShoalError("INVALID_ARGUMENT", "clusterId must be 25 characters of [0-9a-z]");
  if (!isNodeRole(args.role)) throw new ShoalError("INVALID_ARGUMENT", 'role must be "swarm-manager" or "swarm-worker"');
  const zone = args.zone === undefined || args.zone === "" ? DEFAULT_ZONE : args.zone;
  if (!isValidZone(zone)) {
    throw new ShoalError("INVALID_ARGUMENT", "zone must be 1-63 characters of [A-Za-z0-9._-] starting with a letter or digit");
  }
  return { nodeId: args.nodeId, clusterId: args.clusterId, role: args.role, zone };
}

export function spiffeUri(identity: NodeIdentity): string {
  return `spiffe://${identity.clusterId}/zone/${identity.zone}/${identity.role}/${identity.nodeId}`;
}

const SPIFFE_PATTERN = /^spiffe:\/\/([0-9a-z]{25})\/zone\/([A-Za-z0-9][A-Za-z0-9._-]{0,62})\/(swarm-manager|swarm-worker)\/([0-9a-z]{25})$/;

/** Parses a Shoal SPIFFE URI; undefined if it does not have exactly the Shoal layout. */
export function parseSpiffeUri(uri: string): NodeIdentity | undefined {
  const match = SPIFFE_PATTERN.exec(uri);
  if (!match) return undefined;
  return { clusterId: match[1]!, zone: match[2]!, role: match[3] as NodeRole, nodeId: match[4]! };
}
