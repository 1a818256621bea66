// RenewExpiredManagerCertificate (issue 11): a manager whose certificate expired while it was down,
// in a cluster that kept its quorum, gets a new certificate from the leader. TLS refuses an expired
// client certificate, so the call needs none; it is authenticated by the CURRENT manager join token
// plus the expired certificate and a signature by its key (src/ca/expired-renewal-proof.ts):
//   1. the token, first, so that a caller without it learns nothing about nodes (TOKEN_* codes; a
//      worker token is TOKEN_INVALID);
//   2. the certificate: a manager certificate of this cluster, chained to a root the cluster trusts
//      (during a root rotation, either), not revoked by node or serial; its NotAfter is ignored, but
//      only while it expired at most one certificate validity (the cluster's --cert-expiry) ago;
//   3. the proof of possession of its private key over this request's CSR (UNAUTHENTICATED);
//   4. the store, read after a ReadIndex: the node still exists (NOT_FOUND: removed) and is still a
//      manager (CERT_WRONG_ROLE: demoted).
// The certificate is then issued as every renewal is (issueForNode): node ID from the certificate,
// role and zone from the store, never from the request; the raft membership does not change.
// Failures count against the join limiter of the caller's address; every outcome is logged, never
// the token.
import { ShoalError } from "../../base/errors.js";
import { JoinTokenSet, RootCA, splitPemBundle, trustBundleOf, verifyExpiredNodeCertificate, verifyExpiredRenewalProof, type NodeCertificateInfo } from "../../ca/index.js";
import type { RenewExpiredManagerCertificateRequest, RenewExpiredManagerCertificateResponse } from "../../proto/shoal/v1/ca.js";
import { NodeRole as ProtoNodeRole } from "../../proto/shoal/v1/objects.js";
import type { ManagerContext } from "../context.js";
import { certValidityMs, issueForNode, protoRole, requireCluster } from "./ca-server.js";

/** Largest expired certificate (chain) accepted in the request. */
export const MAX_EXPIRED_CERT_BYTES = 32 * 1024;
const READ_INDEX_TIMEOUT_MS = 5_000;

/** The roots the cluster trusts now: its root, and during a root CA rotation the new one too. */
function trustedRoots(ctx: ManagerContext): RootCA[] {
  const cluster = requireCluster(ctx);
  const current = Buffer.from(cluster.rootCa?.caCertPem ?? []).toString("utf8");
  const pending = Buffer.from(cluster.rootCa?.rootRotation?.caCertPem ?? []).toString("utf8");
  return splitPemBundle(trustBundleOf(current, pending)).map((pem) => RootCA.fromCertOnly(pem));
}

/**
 * Checks the request and signs. `parseCsr` checks the CSR (after the token, certificate and proof).
 * `onStage` learns the node ID as soon as the certificate names one (for the caller's refusal log
 * line). Throws the refusals listed at the top of this file.
 */
export async function renewExpiredManagerForPeer(
  ctx: ManagerContext,
  req: RenewExpiredManagerCertificateRequest,
  parseCsr: () => string | Uint8Array,
  onStage: (fields: { nodeId?: string; serial?: string }) => void = () => undefined,
): Promise<RenewExpiredManagerCertificateResponse & { previousSerial: string; expiredForMs: number }> {
  ctx.requireLeader();
  const cluster = requireCluster(ctx);
  const role = JoinTokenSet.fromProto(cluster.rootCa!.joinTokens!, ctx.rootCA()).match(req.token, ctx.clock);
  if (role !== "swarm-manager") {
    throw new ShoalError("TOKEN_INVALID", "this is the worker join token: renewing a manager's expired certificate needs the current manager token (`shoal join-token manager -q` on a live manager)");
  }
  if (req.expiredCertificate.length === 0 || req.expiredCertificate.length > MAX_EXPIRED_CERT_BYTES) {
    throw new ShoalError("CERT_INVALID", `the request must carry the expired node certificate (PEM, at most ${MAX_EXPIRED_CERT_BYTES} bytes)`);
  }
  const certPem = Buffer.from(req.expiredCertificate).toString("utf8");
  let info: NodeCertificateInfo;
  try {
    info = verifyExpiredNodeCertificate(certPem, {
      rootCA: trustedRoots(ctx),
      clusterId: ctx.clusterId,
      roles: ["swarm-manager"],
      clock: ctx.clock,
      revocation: { isRevoked: ({ nodeId, serial }) => ctx.revocation.isRevoked(nodeId, serial) },
    });
  } catch (err) {
    if (err instanceof ShoalError && err.code === "PEM_INVALID") throw new ShoalError("CERT_INVALID", "the expired certificate is not a PEM certificate");
    throw err;
  }
  onStage({ nodeId: info.nodeId, serial: info.serial });
  const boundMs = certValidityMs(cluster);
  const expiredForMs = ctx.clock.nowMs() - info.notAfter.getTime();
  if (expiredForMs > boundMs) {
    throw new ShoalError(
      "CERT_EXPIRED",
      `the certificate of node ${info.nodeId} expired at ${info.notAfter.toISOString()}, longer ago than the cluster's certificate validity (${Math.round(boundMs / 3_600_000)} h): ` +
        `it cannot be renewed; run \`shoal node rm --force ${info.nodeId}\` on a live manager and join this node again with a manager token`,
    );
  }
  verifyExpiredRenewalProof(certPem, req.proof, { clusterId: ctx.clusterId, nodeId: info.nodeId, csr: req.csr });
  const csr = parseCsr();
  // Every committed entry applied: a removal or demotion that just happened is seen.
  await ctx.raft.readIndex({ timeoutMs: READ_INDEX_TIMEOUT_MS });
  if (ctx.revocation.isRevoked(info.nodeId, info.serial)) {
    throw new ShoalError("CERT_REVOKED", `node ${info.nodeId} (certificate serial ${info.serial}) was removed from the cluster; it must join again with a token`);
  }
  const node = ctx.store.getNode(info.nodeId);
  if (node === undefined) throw new ShoalError("NOT_FOUND", `node ${info.nodeId} is not in the cluster (it was removed); join again with a manager token as a new node`);
  if (node.spec?.desiredRole !== ProtoNodeRole.NODE_ROLE_MANAGER) {
    throw new ShoalError("CERT_WRONG_ROLE", `node ${info.nodeId} is no longer a manager in the cluster state (it was demoted); it cannot renew a manager certificate`);
  }
  const issued = await issueForNode(ctx, info.nodeId, csr, info.serial);
  if (issued.role !== "swarm-manager") throw new ShoalError("INTERNAL", "the reissued certificate is not a manager certificate");
  return { nodeId: info.nodeId, certificate: Buffer.from(issued.certPem), role: protoRole(issued.role), previousSerial: info.serial, expiredForMs };
}
