// Which root signs node certificates: the cluster's root, or during a root rotation the new root,
// whose certificates carry the cross-signed intermediate after the leaf (src/ca/root-rotation.ts).
import { loadRootCA, type RootCA } from "../../ca/index.js";
import type { Cluster } from "../../proto/shoal/v1/objects.js";

export interface IssuingRoot {
  rootCA: RootCA;
  /** PEM appended after each leaf ("" outside a rotation). */
  chainPem: string;
}

/** Parses the pending root once per rotation target (the store keeps PEM). */
export class IssuingRootCache {
  private cached: { pem: string; root: RootCA } | undefined;

  /** The rotation's root and intermediate, or undefined outside a rotation. */
  pending(cluster: Cluster): IssuingRoot | undefined {
    const rotation = cluster.rootCa?.rootRotation;
    if (rotation === undefined || rotation.caCertPem.length === 0) return undefined;
    const pem = Buffer.from(rotation.caCertPem).toString("utf8");
    if (this.cached?.pem !== pem) this.cached = { pem, root: loadRootCA(pem, Buffer.from(rotation.caKeyPem).toString("utf8")) };
    return { rootCA: this.cached.root, chainPem: Buffer.from(rotation.crossSignedCaCertPem).toString("utf8") };
  }

  issuing(cluster: Cluster, current: () => RootCA): IssuingRoot {
    return this.pending(cluster) ?? { rootCA: current(), chainPem: "" };
  }
}
