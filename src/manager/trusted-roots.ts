// The roots this manager trusts, from the replicated cluster object: the current root, and during
// a root CA rotation the new one too. The TLS server, the peer verifier and new outgoing channels
// follow it, so a rotation needs no restart.
import { RootCA, splitPemBundle, trustBundleOf } from "../ca/index.js";
import type { Cluster } from "../proto/shoal/v1/objects.js";

export class TrustedRoots {
  private bundle: string;
  private parsed: RootCA[];

  constructor(initialBundlePem: string) {
    this.bundle = initialBundlePem;
    this.parsed = splitPemBundle(initialBundlePem).map((pem) => RootCA.fromCertOnly(pem));
  }

  get bundlePem(): string {
    return this.bundle;
  }

  roots(): readonly RootCA[] {
    return this.parsed;
  }

  /** Takes the cluster's roots; true when they changed. */
  refresh(cluster: Cluster | undefined): boolean {
    const rootCa = cluster?.rootCa;
    if (rootCa === undefined || rootCa.caCertPem.length === 0) return false;
    const next = trustBundleOf(Buffer.from(rootCa.caCertPem).toString("utf8"), Buffer.from(rootCa.rootRotation?.caCertPem ?? []).toString("utf8"));
    if (next === this.bundle) return false;
    this.parsed = splitPemBundle(next).map((pem) => RootCA.fromCertOnly(pem));
    this.bundle = next;
    return true;
  }
}
