// Leader loop: drives a root CA rotation (`shoal ca --rotate`) to its end. It marks for renewal
// every node whose certificate is not yet under the new root, and once every node holds one, makes
// the new root the only one: the trust bundle, the signing key and the join tokens (whose digest
// pins the root) all change in one write. Its state is the cluster object, so a new leader goes on.
import { JoinTokenSet, RootCA } from "../../ca/index.js";
import { CertificateStatus, type Cluster } from "../../proto/shoal/v1/objects.js";
import { isNodeDown, rootRotationProgress, type LeaderLoopFactory, type StoreTransaction } from "../../state/index.js";

/** Changes are gathered this long before a pass (heartbeats update nodes often). */
export const ROOT_ROTATION_DEBOUNCE_MS = 100;
/** A failed pass (a conflict storm, no quorum) is tried again after this long. */
export const ROOT_ROTATION_RETRY_MS = 2_000;

/** The new root becomes the cluster's root; the old tokens are kept only to be refused as rotated. */
function finishRotation(tx: StoreTransaction, cluster: Cluster): void {
  const rootCa = cluster.rootCa!;
  const rotation = rootCa.rootRotation!;
  const oldRoot = RootCA.fromCertOnly(Buffer.from(rootCa.caCertPem).toString("utf8"));
  const newRoot = RootCA.fromCertOnly(Buffer.from(rotation.caCertPem).toString("utf8"));
  const tokens = JoinTokenSet.fromProto(rootCa.joinTokens!, oldRoot).forNewRoot(newRoot);
  tx.updateCluster({
    ...cluster,
    rootCa: {
      caCertPem: Buffer.from(rotation.caCertPem),
      caKeyPem: Buffer.from(rotation.caKeyPem),
      caDigest: newRoot.digest(),
      joinTokens: tokens.toProto(),
      rootRotation: undefined,
    },
  });
}

export const rootRotationLoop: LeaderLoopFactory = {
  name: "root-rotation",
  start(ctx) {
    let work: Promise<void> = Promise.resolve();
    let scheduled = false;
    let running = false;

    const pass = async (): Promise<void> => {
      let outcome = "none" as "none" | "marked" | "finished";
      let marked = 0;
      await ctx.update((tx) => {
        outcome = "none";
        marked = 0;
        const cluster = tx.getCluster();
        const nodes = ctx.store.listNodes().flatMap((n) => tx.getNode(n.id) ?? []);
        const progress = rootRotationProgress(cluster, nodes);
        if (cluster === undefined || progress === undefined) return false;
        if (progress.waiting.length === 0) {
          finishRotation(tx, cluster);
          outcome = "finished";
          return true;
        }
        const issued = new Set(progress.issuedNotInUse.map((n) => n.id));
        for (const node of progress.waiting) {
          // A down node cannot renew: it stays in the list the rotation waits for (`shoal ca`).
          // One already issued a certificate under the new root waits for its session to use it.
          if (isNodeDown(node) || issued.has(node.id) || node.certificate === undefined || node.certificate.status === CertificateStatus.CERTIFICATE_STATUS_RENEW) continue;
          tx.updateNode({ ...node, certificate: { ...node.certificate, status: CertificateStatus.CERTIFICATE_STATUS_RENEW } });
          marked++;
        }
        outcome = marked > 0 ? "marked" : "none";
        return marked > 0;
      });
      if (outcome === "finished") ctx.logger.info({}, "root CA rotation finished: every node holds a certificate under the new root, which is now the only trusted root");
      else if (outcome === "marked") ctx.logger.info({ nodes: marked }, "root CA rotation: asked nodes to renew their certificates");
    };

    const trigger = (): void => {
      if (scheduled || ctx.stopped) return;
      scheduled = true;
      ctx.timer(() => {
        scheduled = false;
        if (running) {
          trigger();
          return;
        }
        running = true;
        work = pass()
          .catch((err: unknown) => {
            ctx.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "root CA rotation pass failed; trying again");
            ctx.timer(trigger, ROOT_ROTATION_RETRY_MS);
          })
          .finally(() => {
            running = false;
          });
      }, ROOT_ROTATION_DEBOUNCE_MS);
    };

    ctx.watch({ tables: ["nodes", "clusters"] }, trigger);
    trigger();
    return {
      stop: () => undefined,
      get busy() {
        return scheduled || running;
      },
      idle: () => work,
    };
  },
};
