// Typed errors with stable codes. Every failure a user or a peer can cause maps to one of these
// codes, which in turn map to a gRPC status and a CLI exit code. Messages never carry secrets.

/** Every stable code, as a value so that tests and decoders can enumerate them. */
export const SHOAL_ERROR_CODES = [
  // input and formats
  "INVALID_ARGUMENT",
  "TOKEN_MALFORMED",
  "TOKEN_VERSION",
  "TOKEN_DIGEST_MISMATCH",
  "TOKEN_INVALID",
  "TOKEN_ROTATED",
  "TOKEN_EXPIRED",
  "UNLOCK_KEY_MALFORMED",
  "UNLOCK_KEY_WRONG",
  "PEM_INVALID",
  "CSR_INVALID",
  /** `--metrics-addr` on a host other than loopback without `--metrics-allow-remote`. */
  "METRICS_ADDR_NOT_LOOPBACK",
  // certificates
  "CERT_INVALID",
  "CERT_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_WRONG_CLUSTER",
  "CERT_WRONG_ROLE",
  "CERT_REVOKED",
  /** An imported root CA: the key does not belong to the certificate. */
  "CA_KEY_MISMATCH",
  /** An imported root CA key that is not ECDSA P-256. */
  "CA_KEY_UNSUPPORTED",
  /** An imported root certificate that is not a CA (basicConstraints cA, keyCertSign). */
  "CA_CERT_NOT_CA",
  /** The external CA returned a certificate other than the one asked for (subject, key, zone, chain, dates). */
  "EXTERNAL_CA_MISMATCH",
  /** The external CA could not be reached, timed out, or answered with an error or unreadable data. */
  "EXTERNAL_CA_UNAVAILABLE",
  /** The operation needs the root CA key, and this cluster's managers hold its certificate only (`shoal init --external-ca`). */
  "CA_KEY_NOT_HELD",
  // storage
  "STORE_CORRUPT",
  "STORE_DECRYPT_FAILED",
  "STORE_CLOSED",
  "STORE_LOCKED",
  "KEY_FILE_INVALID",
  "CRYPTO_FAILED",
  // raft and cluster
  "NOT_LEADER",
  "NO_QUORUM",
  "PROPOSAL_DROPPED",
  /** A write may or may not have been applied (overtaken by a snapshot, or no quorum after it was logged). */
  "OUTCOME_UNKNOWN",
  "PROPOSAL_TOO_LARGE",
  "QUEUE_FULL",
  "RAFT_INVARIANT",
  "RAFT_LOG_CORRUPT",
  "TIMEOUT",
  // node lifecycle and authorization
  "PERMISSION_DENIED",
  "UNAUTHENTICATED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  /** A compare-and-set lost: the object or key changed since the version the writer read. */
  "VERSION_CONFLICT",
  "FAILED_PRECONDITION",
  "NOT_MANAGER",
  "LOCKED",
  "NOT_IN_CLUSTER",
  "ALREADY_IN_CLUSTER",
  "MESSAGE_TOO_LARGE",
  "UNAVAILABLE",
  // images (src/oci, src/agent/images)
  /** The registry has no such repository, tag, manifest or blob. */
  "IMAGE_NOT_FOUND",
  /** The registry could not be reached or answered 5xx/429, or too slowly. */
  "REGISTRY_UNAVAILABLE",
  /** Bytes that arrived do not hash to the digest they were asked for by. */
  "DIGEST_MISMATCH",
  // P2P prefetch (src/ca/grant.ts, src/agent/p2p): a serving peer's refusals, each its own code
  /** The grant is malformed, too large, or not signed by this cluster's CA. */
  "GRANT_INVALID",
  "GRANT_WRONG_CLUSTER",
  "GRANT_WRONG_ZONE",
  /** The grant names another node than the requester's certificate. */
  "GRANT_WRONG_NODE",
  /** The grant is for another blob than the one requested. */
  "GRANT_WRONG_BLOB",
  "GRANT_EXPIRED",
  /** The requester's certificate zone is not the serving peer's zone. */
  "PEER_WRONG_ZONE",
  /** The requester already has as many piece streams open at this peer as it may. */
  "PEER_OVERLOADED",
  /** A piece's bytes do not hash to the piece hash of the plan. */
  "PIECE_CORRUPT",
  /** A blob download has no peer left that can supply it and no origin to fall back to (make the node a seed). */
  "PREFETCH_NO_SOURCE",
  "INTERNAL",
] as const;

export type ShoalErrorCode = (typeof SHOAL_ERROR_CODES)[number];

export class ShoalError extends Error {
  readonly code: ShoalErrorCode;
  override readonly cause?: unknown;

  constructor(code: ShoalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = "ShoalError";
    this.code = code;
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

const KNOWN_CODES: ReadonlySet<string> = new Set(SHOAL_ERROR_CODES);

/** Whether `code` is one of ours (a peer may send anything in metadata). */
export function isShoalErrorCode(code: string): code is ShoalErrorCode {
  return KNOWN_CODES.has(code);
}

export function isShoalError(err: unknown, code?: ShoalErrorCode): err is ShoalError {
  return err instanceof ShoalError && (code === undefined || err.code === code);
}

/** Throws RAFT_INVARIANT-style assertion errors: corruption stops the caller, it never limps on. */
export function invariant(condition: unknown, message: string, code: ShoalErrorCode = "INTERNAL"): asserts condition {
  if (!condition) throw new ShoalError(code, `invariant violated: ${message}`);
}
