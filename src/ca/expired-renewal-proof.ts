// Proof that a manager asking for the renewal of its expired certificate holds that certificate's
// private key (issue 11): an ECDSA P-256 SHA-256 signature by the old key over a domain-separated
// message naming the cluster, the node and the exact CSR bytes of the request. The CSR binds the new
// key (it is self-signed by it), so a replayed request only yields a certificate for a key the
// replayer does not hold; the domain keeps the signature from meaning anything elsewhere.
import { createHash, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import { ShoalError } from "../base/errors.js";
import { decodePem } from "./pem.js";

export const EXPIRED_RENEWAL_PROOF_DOMAIN = "shoal-renew-expired-manager-v1";
/** An ECDSA P-256 signature in DER is at most 72 bytes; anything much larger is not one. */
export const MAX_EXPIRED_RENEWAL_PROOF_BYTES = 256;

function proofMessage(args: { clusterId: string; nodeId: string; csr: Uint8Array }): Buffer {
  const csrDigest = createHash("sha256").update(args.csr).digest("hex");
  return Buffer.from(`${EXPIRED_RENEWAL_PROOF_DOMAIN}\n${args.clusterId}\n${args.nodeId}\n${csrDigest}`, "utf8");
}

/** Signs the proof with the expired certificate's private key (on the node that holds it). */
export function signExpiredRenewalProof(oldKey: KeyObject, args: { clusterId: string; nodeId: string; csr: Uint8Array }): Buffer {
  return sign("sha256", proofMessage(args), { key: oldKey, dsaEncoding: "der" });
}

/**
 * Checks `proof` against the public key of `certPem`'s first certificate (already verified by the
 * caller as our node certificate). Throws UNAUTHENTICATED when it is not that key's signature.
 */
export function verifyExpiredRenewalProof(certPem: string | Uint8Array, proof: Uint8Array, args: { clusterId: string; nodeId: string; csr: Uint8Array }): void {
  const refused = new ShoalError(
    "UNAUTHENTICATED",
    "the renewal request is not signed by the expired certificate's private key (proof of possession failed); only the node holding that key can renew it",
  );
  if (proof.length === 0 || proof.length > MAX_EXPIRED_RENEWAL_PROOF_BYTES) throw refused;
  const der = typeof certPem === "string" ? decodePem(certPem, "CERTIFICATE", "the expired certificate") : Buffer.from(certPem);
  const publicKey = new X509Certificate(der).publicKey;
  let valid = false;
  try {
    valid = verify("sha256", proofMessage(args), { key: publicKey, dsaEncoding: "der" }, proof);
  } catch {
    valid = false;
  }
  if (!valid) throw refused;
}
