// Recovery of the last manager whose certificate expired while it was down (`shoal daemon
// --renew-expired`, issue 11): a single-manager cluster that was off longer than the certificate
// expiry has nobody to renew it, so it reissues its own certificate from the CA key in its store.
// Allowed only when this manager is its raft configuration's only voter (it then leads on its own
// quorum, as any leader that signs), and only for the node the store still holds as a manager whose
// certificate is not revoked: a removed or demoted node never gets back in this way.
import { ShoalError } from "../../base/errors.js";
import { verifyExpiredNodeCertificate } from "../../ca/index.js";
import { NodeRole as ProtoNodeRole } from "../../proto/shoal/v1/objects.js";
import type { ManagerContext } from "../context.js";
import { keylessRenewExpiredRefused } from "../keyless.js";
import { issueForNode } from "./ca-server.js";

export interface ExpiredRenewal {
  certPem: string;
  /** Serial of the expired certificate it replaces (canonical hex; not secret). */
  previousSerial: string;
}

/**
 * Refuses unless this manager is the only voter of its raft configuration. Checked before waiting
 * for leadership: a manager with peers would wait for a quorum its expired certificate cannot reach.
 */
export function checkLastManager(ctx: ManagerContext): void {
  const status = ctx.raft.status();
  const voters = status.members.filter((m) => m.voter);
  if (voters.length !== 1 || voters[0]!.raftId !== status.id) {
    throw new ShoalError(
      "FAILED_PRECONDITION",
      `--renew-expired without a token is only for a cluster's last manager, and this one's raft configuration has ${voters.length} voting managers: ` +
        "while the others have quorum, give the current manager join token with `--renew-expired-token-file FILE` so that a live manager renews it; " +
        "else on a live manager run `shoal node rm --force` of this node, then wipe this node (DIR/node.json, DIR/certificates, DIR/state, DIR/keys) and join again with a manager token",
    );
  }
}

/**
 * Waits (up to `timeoutMs` on the context's clock) for this single manager to lead and to have
 * applied its whole log, then checks the presented expired certificate and signs a new one for the
 * CSR with the node's role and zone from the store. Throws FAILED_PRECONDITION (not the last
 * manager), CERT_REVOKED, NOT_FOUND (removed), CERT_WRONG_ROLE (demoted), CERT_* (not ours), TIMEOUT.
 */
export async function renewExpiredLastManager(
  ctx: ManagerContext,
  args: { expiredCertPem: string; csr: string | Uint8Array; timeoutMs: number },
): Promise<ExpiredRenewal> {
  checkLastManager(ctx);
  const deadline = ctx.clock.nowMs() + args.timeoutMs;
  while (!ctx.raft.isLeader) {
    if (ctx.raft.isStopped) throw new ShoalError("UNAVAILABLE", "this manager is stopping");
    if (ctx.clock.nowMs() > deadline) throw new ShoalError("TIMEOUT", "this manager did not elect itself leader in time; its certificate was not renewed");
    await ctx.clock.sleep(20);
  }
  // Every entry of the log applied: the revocation list and the node record are the latest.
  await ctx.raft.readIndex({ timeoutMs: args.timeoutMs });
  checkLastManager(ctx);
  if (!ctx.rootCA().canSign) throw keylessRenewExpiredRefused(ctx.nodeId);
  const info = verifyExpiredNodeCertificate(args.expiredCertPem, {
    rootCA: ctx.rootCA(),
    clusterId: ctx.clusterId,
    roles: ["swarm-manager"],
    clock: ctx.clock,
    revocation: { isRevoked: ({ nodeId, serial }) => ctx.revocation.isRevoked(nodeId, serial) },
  });
  if (info.nodeId !== ctx.nodeId) throw new ShoalError("CERT_INVALID", `the certificate on disk is for node ${info.nodeId}, not this manager (${ctx.nodeId})`);
  const node = ctx.store.getNode(info.nodeId);
  if (node === undefined) throw new ShoalError("NOT_FOUND", `node ${info.nodeId} is not in the cluster (it was removed); join a cluster again with a token`);
  if (node.spec?.desiredRole !== ProtoNodeRole.NODE_ROLE_MANAGER) {
    throw new ShoalError("CERT_WRONG_ROLE", `node ${info.nodeId} is no longer a manager in the cluster state (it was demoted); it cannot renew a manager certificate`);
  }
  const { certPem, role } = await issueForNode(ctx, info.nodeId, args.csr, info.serial);
  if (role !== "swarm-manager") throw new ShoalError("INTERNAL", "the reissued certificate is not a manager certificate");
  return { certPem, previousSerial: info.serial };
}
