// The replicated revocation list (Cluster.revocation_list): what `node rm` adds and when entries
// may be forgotten. Pure functions over the proto form; the store wraps them in transactions.
import type { Node, RevocationList, RevokedNode } from "../proto/shoal/v1/objects.js";
import { REVOCATION_RETENTION_AFTER_EXPIRY_MS } from "../ca/index.js";

/** Entries are collected this long after the node's last certificate expired: the CA's own rule. */
export const REVOCATION_GRACE_MS = REVOCATION_RETENTION_AFTER_EXPIRY_MS;

/** Serials of every certificate the node holds or held, oldest first, without repeats. */
export function nodeSerials(node: Node): string[] {
  const cert = node.certificate;
  if (cert === undefined) return [];
  const all = [...cert.issuedSerials, cert.serial].filter((s) => s !== "");
  return [...new Set(all)];
}

/** When the node's last certificate stops being valid; `fallback` if it never had one. */
export function lastCertNotAfter(node: Node, fallback: Date): Date {
  const cert = node.certificate;
  const times = [cert?.lastNotAfter, cert?.notAfter].filter((d): d is Date => d !== undefined).map((d) => d.getTime());
  return times.length === 0 ? new Date(fallback.getTime()) : new Date(Math.max(...times));
}

/** The list with the node (ID and every serial) added, merged into its entry if it is already there. */
export function withRevokedNode(list: RevocationList | undefined, node: Node, removedAt: Date): RevocationList {
  const nodes = (list?.nodes ?? []).map((n) => ({ ...n, serials: [...n.serials] }));
  const notAfter = lastCertNotAfter(node, removedAt);
  const existing = nodes.find((n) => n.nodeId === node.id);
  if (existing !== undefined) {
    existing.serials = [...new Set([...existing.serials, ...nodeSerials(node)])];
    const previous = existing.lastCertNotAfter?.getTime() ?? 0;
    existing.lastCertNotAfter = new Date(Math.max(previous, notAfter.getTime()));
  } else {
    const entry: RevokedNode = { nodeId: node.id, serials: nodeSerials(node), removedAt: new Date(removedAt.getTime()), lastCertNotAfter: notAfter };
    nodes.push(entry);
  }
  return { nodes };
}

/** True once the entry may be dropped: 7 days after its last certificate expired (inclusive). */
export function isRevocationCollectable(entry: RevokedNode, now: Date): boolean {
  const notAfter = entry.lastCertNotAfter ?? entry.removedAt;
  if (notAfter === undefined) return false;
  return now.getTime() >= notAfter.getTime() + REVOCATION_GRACE_MS;
}

/** The list without collectable entries, and how many were dropped. */
export function withoutExpiredRevocations(list: RevocationList | undefined, now: Date): { list: RevocationList; removed: number } {
  const before = list?.nodes ?? [];
  const kept = before.filter((n) => !isRevocationCollectable(n, now));
  return { list: { nodes: kept }, removed: before.length - kept.length };
}

// What an entry revokes depends on whether its node is still in the store (a demoted manager's
// entry lists only old serials): src/manager/revocation-view.ts decides that, not this module.
