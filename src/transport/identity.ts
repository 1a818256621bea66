// Who is on the other end of a TLS connection: the identity a verified node certificate carries, the
// verifier contract the interceptor calls, and its production implementation on src/ca.
import { createHash } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { normalizeSerial, RootCA, splitPemBundle, verifyNodeCertificate, type NodeRole } from "../ca/index.js";
import type { RevocationState } from "./revocation.js";

export type { NodeRole };

export interface PeerIdentity {
  nodeId: string;
  clusterId: string;
  role: NodeRole;
  zone: string;
  /** Canonical upper-case hex serial (src/ca normalizeSerial). */
  serial: string;
  notAfter: Date;
}

/**
 * Verifies a DER client certificate: chain to the root, validity dates, O = this cluster, revocation.
 * Throws ShoalError CERT_UNTRUSTED / CERT_EXPIRED / CERT_NOT_YET_VALID / CERT_INVALID
 * (→ UNAUTHENTICATED) or CERT_WRONG_CLUSTER / CERT_REVOKED (→ PERMISSION_DENIED).
 */
export type PeerVerifier = (certDer: Buffer) => PeerIdentity;

/**
 * One spelling for a serial whatever printed it, so revocation by serial cannot be dodged by
 * formatting ("b02", "0B02", "0b:02").
 */
export function normaliseSerial(serial: string): string {
  return normalizeSerial(serial.replace(/[:\s]/g, ""));
}

/** Key for per-certificate caches: SHA-256 of the DER. */
export function certificateFingerprint(certDer: Buffer): string {
  return createHash("sha256").update(certDer).digest("hex");
}

/** The PeerVerifier the daemon uses: src/ca's verifyNodeCertificate against this cluster's root and list. */
export function caPeerVerifier(opts: { rootCaPem: string; clusterId: string; clock: Clock; revocation: RevocationState }): PeerVerifier {
  const roots = splitPemBundle(opts.rootCaPem).map((pem) => RootCA.fromCertOnly(pem));
  return rootsPeerVerifier({ ...opts, roots: () => roots });
}

/** As caPeerVerifier, with roots that may change (a manager during a root CA rotation reads them from the store). */
export function rootsPeerVerifier(opts: { roots: () => readonly RootCA[]; clusterId: string; clock: Clock; revocation: RevocationState }): PeerVerifier {
  const revocation = { isRevoked: (s: { nodeId: string; serial: string }) => opts.revocation.isRevoked(s.nodeId, s.serial) };
  return (certDer) => {
    const info = verifyNodeCertificate(certDer, { rootCA: opts.roots(), clusterId: opts.clusterId, clock: opts.clock, revocation });
    return { nodeId: info.nodeId, clusterId: info.clusterId, role: info.role, zone: info.zone, serial: info.serial, notAfter: info.notAfter };
  };
}
