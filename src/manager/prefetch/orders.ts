// From a plan to what each node of a prefetch job is told (DESIGN.md §3 rule 9, §8): its role, the
// blobs with their piece hashes, the peers of its own zone it may ask, a grant per blob signed by
// the cluster CA or the leader (peers check it on every call), and — for a seed alone — the header to pull with.
// Pure apart from the signature: the leader calls it when a job starts, is replanned, or its grants
// near expiry.
import { pieceCountOf } from "../../base/bitfield.js";
import { ShoalError } from "../../base/errors.js";
import { MAX_GRANT_LIFETIME_MS, signGrant, type GrantSigner } from "../../ca/index.js";
import type { PrefetchBlob, PrefetchOrder } from "../../proto/shoal/v1/dispatcher.js";
import { isEligible, originStartPiece, type PlanNode, type PrefetchPlan } from "./plan.js";

/** Grants live this long (well under MAX_GRANT_LIFETIME_MS, which peers refuse beyond). */
export const DEFAULT_GRANT_TTL_MS = 5 * 60 * 1000;

export interface OrdersInput {
  jobId: string;
  clusterId: string;
  image: string;
  manifestDigest: string;
  /** The manifest's bytes (verified against manifestDigest by every node). */
  manifest: Uint8Array;
  /** The config and the layers. */
  blobs: readonly PrefetchBlob[];
  plan: PrefetchPlan;
  /** Every target, by node ID, as the store says now (zone, address, revoked, down). */
  nodes: ReadonlyMap<string, PlanNode>;
  /** The CA key, or in a cluster whose managers hold no root key, the leader's node key (src/ca/grant.ts). */
  grantSigner: GrantSigner;
  nowMs: number;
  grantTtlMs?: number;
  /** What a seed pulls with: see RegistryClient.pullAuthorization; undefined: anonymous. */
  seedAccess?: { authorization?: string; caPem?: string };
  /** The job's attempt (raised when its hashes proved wrong and every node must start again). */
  attempt?: number;
}

export interface NodeOrder {
  nodeId: string;
  /** The zone it was planned in (the dispatcher checks it against the node's certificate). */
  zone: string;
  order: PrefetchOrder;
}

/** One order per planned node that may take part now; a revoked or down node gets none. */
export function buildOrders(input: OrdersInput): NodeOrder[] {
  const ttl = input.grantTtlMs ?? DEFAULT_GRANT_TTL_MS;
  if (!Number.isInteger(ttl) || ttl < 1000 || ttl > MAX_GRANT_LIFETIME_MS) {
    throw new ShoalError("INVALID_ARGUMENT", `the grant lifetime must be between 1 s and ${MAX_GRANT_LIFETIME_MS} ms, got ${ttl}`);
  }
  const expiresAtMs = input.nowMs + ttl;
  const orders: NodeOrder[] = [];
  for (const planned of input.plan.nodes) {
    const node = input.nodes.get(planned.nodeId);
    if (node === undefined || !isEligible(node)) continue;
    // The planner never crosses a zone; this is checked again here because a mistake would hand a
    // node of one zone the address and the blobs of another (rule 9): refuse rather than send.
    if (node.zone !== planned.zone) throw new ShoalError("INTERNAL", `prefetch job ${input.jobId}: node ${node.nodeId} is planned in zone ${planned.zone} but is of zone ${node.zone}`);
    const candidates = planned.candidates.flatMap((id) => {
      const peer = input.nodes.get(id);
      if (peer === undefined || !isEligible(peer) || peer.addr === "") return [];
      if (peer.zone !== node.zone) throw new ShoalError("INTERNAL", `prefetch job ${input.jobId}: candidate ${id} of node ${node.nodeId} is of another zone`);
      return [{ nodeId: peer.nodeId, addr: peer.addr }];
    });
    const seed = planned.role === "seed";
    const order: PrefetchOrder = {
      jobId: input.jobId,
      image: input.image,
      manifestDigest: input.manifestDigest,
      manifest: Buffer.from(input.manifest),
      blobs: input.blobs.map((b) => ({ ...b, pieceHashes: [...b.pieceHashes] })),
      seed,
      originStartPieces: seed ? input.blobs.map((b) => originStartPiece(input.plan, node.nodeId, pieceCountOf(Number(b.size), b.pieceSize))) : [],
      candidates,
      grants: input.blobs.map((b) => ({
        blobDigest: b.digest,
        grant: signGrant(input.grantSigner, { jobId: input.jobId, clusterId: input.clusterId, zone: node.zone, nodeId: node.nodeId, blobDigest: b.digest, expiresAtMs }),
      })),
      grantsExpireAt: new Date(expiresAtMs),
      // Only a seed pulls from the registry, so only a seed is told how (rule 9).
      registryAuthorization: seed ? (input.seedAccess?.authorization ?? "") : "",
      registryCaPem: seed ? (input.seedAccess?.caPem ?? "") : "",
      attempt: input.attempt ?? 0,
    };
    orders.push({ nodeId: node.nodeId, zone: node.zone, order });
  }
  return orders;
}

/** Whether an order's grants should be renewed now: less than half their lifetime is left. */
export function grantsDue(order: PrefetchOrder, nowMs: number, grantTtlMs = DEFAULT_GRANT_TTL_MS): boolean {
  const expires = order.grantsExpireAt?.getTime() ?? 0;
  return expires - nowMs < grantTtlMs / 2;
}
