// What the replicated revocation list means for the listeners and the agents: an entry whose node was
// removed (no longer in the store) revokes the node ID and its serials; an entry whose node is still in
// the store only revokes serials (a demoted manager's earlier manager certificates, see ca-server.ts).
import type { ObjectStore } from "../state/index.js";

export interface RevocationSets {
  /** Sorted node IDs to refuse whatever certificate they present. */
  nodeIds: string[];
  /** Sorted serials (as stored) to refuse. */
  serials: string[];
}

export function revocationSets(store: ObjectStore): RevocationSets {
  const entries = store.getCluster()?.revocationList?.nodes ?? [];
  const nodeIds = new Set<string>();
  const serials = new Set<string>();
  for (const entry of entries) {
    if (store.getNode(entry.nodeId) === undefined) nodeIds.add(entry.nodeId);
    for (const serial of entry.serials) serials.add(serial);
  }
  return { nodeIds: [...nodeIds].sort(), serials: [...serials].sort() };
}
