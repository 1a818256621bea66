// Revoking a demoted manager's earlier certificates by serial (its node ID stays valid: it is a worker
// now). Two steps, so no call is cut off by the revocation it caused:
//  1. when its worker certificate is issued, every earlier serial except the one that authenticated
//     the renewal is revoked, and the node gets an entry on the list even if that leaves no serial;
//  2. when the node opens a session with its newest (worker) certificate, the serials it no longer
//     uses, the one from step 1 included, are revoked too.
// A node that never uses its worker certificate keeps step 1's exception, which the store-role check
// (manager-access.ts) refuses on every manager-only RPC anyway.
import { normalizeSerial } from "../ca/index.js";
import type { Cluster, Node } from "../proto/shoal/v1/objects.js";
import { nodeSerials, withRevokedNode } from "../state/index.js";

/** The node as it would look holding only the serials in `serials` (so withRevokedNode revokes exactly those). */
function withSerials(node: Node, serials: readonly string[]): Node {
  return { ...node, certificate: node.certificate === undefined ? undefined : { ...node.certificate, serial: "", issuedSerials: [...serials] } };
}

/** Step 1: the cluster with `node`'s earlier serials (all but `keepSerial`) revoked. */
export function revokeOnDemotion(cluster: Cluster, node: Node, keepSerial: string | undefined, now: Date): Cluster {
  const keep = keepSerial === undefined ? undefined : normalizeSerial(keepSerial);
  const serials = nodeSerials(node).filter((s) => normalizeSerial(s) !== keep);
  const updated = structuredClone(cluster);
  updated.revocationList = withRevokedNode(cluster.revocationList, withSerials(node, serials), now);
  return updated;
}

/**
 * Step 2: the cluster with the serials `node` no longer uses revoked, when it has a demotion entry and
 * presents its newest certificate (`presentedSerial`); undefined when there is nothing to add.
 */
export function revokeSupersededSerials(cluster: Cluster, node: Node, presentedSerial: string, now: Date): Cluster | undefined {
  const current = node.certificate?.serial ?? "";
  if (current === "" || normalizeSerial(current) !== normalizeSerial(presentedSerial)) return undefined;
  const entry = cluster.revocationList?.nodes.find((n) => n.nodeId === node.id);
  if (entry === undefined) return undefined;
  const revoked = new Set(entry.serials.map(normalizeSerial));
  const pending = nodeSerials(node).filter((s) => normalizeSerial(s) !== normalizeSerial(current) && !revoked.has(normalizeSerial(s)));
  if (pending.length === 0) return undefined;
  const updated = structuredClone(cluster);
  updated.revocationList = withRevokedNode(cluster.revocationList, withSerials(node, pending), now);
  return updated;
}
