// Maps every failure of a `shoal` command to one sentence for stderr and a stable exit code, so that
// scripts can branch on the class of failure without parsing text.
//
// Exit codes (stable; scripts rely on them):
//   0  success
//   1  generic failure (internal error, anything not classified below), and a service that
//      `service create` / `update` waited for did not converge: one of its new tasks failed or was
//      rejected, or its rolling update paused or was rolled back (the service stays)
//   2  usage or invalid input: unknown command or flag, missing argument, bad duration, secret too
//      large, malformed token or key (INVALID_ARGUMENT, MESSAGE_TOO_LARGE, TOKEN_MALFORMED, ...)
//   3  unavailable: the daemon cannot be reached, no leader or no quorum, timeout (also a service
//      that `service create` / `update` waited for and that had not converged after 10 minutes)
//   4  permission or locked: this node is locked, not a manager, a token/key/certificate/prefetch
//      grant was refused, access to the socket was denied
//   5  not found: no node, service or secret by that name or ID
//   6  conflict or wrong state: already exists, a version conflict (another writer changed the object
//      first, also after retries), a precondition (secret in use, quorum would break), not in a
//      cluster, already in a cluster
// The map below is total: a new ShoalErrorCode does not typecheck until it is given an exit code.
import type { ShoalError, ShoalErrorCode } from "../base/errors.js";

export const EXIT_OK = 0;
export const EXIT_GENERIC = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 3;
export const EXIT_PERMISSION = 4;
export const EXIT_NOT_FOUND = 5;
export const EXIT_CONFLICT = 6;

const EXIT_BY_CODE: Record<ShoalErrorCode, number> = {
  INVALID_ARGUMENT: EXIT_USAGE,
  TOKEN_MALFORMED: EXIT_USAGE,
  TOKEN_VERSION: EXIT_USAGE,
  UNLOCK_KEY_MALFORMED: EXIT_USAGE,
  PEM_INVALID: EXIT_USAGE,
  CSR_INVALID: EXIT_USAGE,
  METRICS_ADDR_NOT_LOOPBACK: EXIT_USAGE,
  CA_KEY_MISMATCH: EXIT_USAGE,
  CA_KEY_UNSUPPORTED: EXIT_USAGE,
  CA_CERT_NOT_CA: EXIT_USAGE,
  EXTERNAL_CA_MISMATCH: EXIT_UNAVAILABLE,
  EXTERNAL_CA_UNAVAILABLE: EXIT_UNAVAILABLE,
  CA_KEY_NOT_HELD: EXIT_CONFLICT,
  MESSAGE_TOO_LARGE: EXIT_USAGE,
  PROPOSAL_TOO_LARGE: EXIT_USAGE,
  UNAVAILABLE: EXIT_UNAVAILABLE,
  NOT_LEADER: EXIT_UNAVAILABLE,
  NO_QUORUM: EXIT_UNAVAILABLE,
  PROPOSAL_DROPPED: EXIT_UNAVAILABLE,
  QUEUE_FULL: EXIT_UNAVAILABLE,
  TIMEOUT: EXIT_UNAVAILABLE,
  LOCKED: EXIT_PERMISSION,
  STORE_LOCKED: EXIT_PERMISSION,
  NOT_MANAGER: EXIT_PERMISSION,
  PERMISSION_DENIED: EXIT_PERMISSION,
  UNAUTHENTICATED: EXIT_PERMISSION,
  TOKEN_DIGEST_MISMATCH: EXIT_PERMISSION,
  TOKEN_INVALID: EXIT_PERMISSION,
  TOKEN_ROTATED: EXIT_PERMISSION,
  TOKEN_EXPIRED: EXIT_PERMISSION,
  UNLOCK_KEY_WRONG: EXIT_PERMISSION,
  CERT_INVALID: EXIT_PERMISSION,
  CERT_EXPIRED: EXIT_PERMISSION,
  CERT_NOT_YET_VALID: EXIT_PERMISSION,
  CERT_UNTRUSTED: EXIT_PERMISSION,
  CERT_WRONG_CLUSTER: EXIT_PERMISSION,
  CERT_WRONG_ROLE: EXIT_PERMISSION,
  CERT_REVOKED: EXIT_PERMISSION,
  NOT_FOUND: EXIT_NOT_FOUND,
  IMAGE_NOT_FOUND: EXIT_NOT_FOUND,
  REGISTRY_UNAVAILABLE: EXIT_UNAVAILABLE,
  DIGEST_MISMATCH: EXIT_GENERIC,
  // A peer's refusals are permission failures; an overloaded peer is "try again"; corrupt bytes exit 1.
  GRANT_INVALID: EXIT_PERMISSION,
  GRANT_WRONG_CLUSTER: EXIT_PERMISSION,
  GRANT_WRONG_ZONE: EXIT_PERMISSION,
  GRANT_WRONG_NODE: EXIT_PERMISSION,
  GRANT_WRONG_BLOB: EXIT_PERMISSION,
  GRANT_EXPIRED: EXIT_PERMISSION,
  PEER_WRONG_ZONE: EXIT_PERMISSION,
  PEER_OVERLOADED: EXIT_UNAVAILABLE,
  PIECE_CORRUPT: EXIT_GENERIC,
  PREFETCH_NO_SOURCE: EXIT_UNAVAILABLE,
  ALREADY_EXISTS: EXIT_CONFLICT,
  VERSION_CONFLICT: EXIT_CONFLICT,
  FAILED_PRECONDITION: EXIT_CONFLICT,
  NOT_IN_CLUSTER: EXIT_CONFLICT,
  ALREADY_IN_CLUSTER: EXIT_CONFLICT,
  STORE_CLOSED: EXIT_UNAVAILABLE,
  // May or may not have been applied: not "unavailable", since a blind retry could apply it twice.
  OUTCOME_UNKNOWN: EXIT_GENERIC,
  STORE_CORRUPT: EXIT_GENERIC,
  STORE_DECRYPT_FAILED: EXIT_GENERIC,
  KEY_FILE_INVALID: EXIT_GENERIC,
  CRYPTO_FAILED: EXIT_GENERIC,
  RAFT_INVARIANT: EXIT_GENERIC,
  RAFT_LOG_CORRUPT: EXIT_GENERIC,
  INTERNAL: EXIT_GENERIC,
};

export function exitCodeFor(code: ShoalErrorCode): number {
  return EXIT_BY_CODE[code];
}

/**
 * The sentence printed for an error. A few classes get a fixed sentence that says what to do,
 * whatever the server's wording; the rest keep the server's message, which already says it.
 */
export function describeError(err: ShoalError): string {
  switch (err.code) {
    case "NOT_MANAGER":
      return "this node is not a manager: run this command on a manager node";
    case "LOCKED":
    case "STORE_LOCKED":
      return "this node is locked: run `shoal unlock`";
    case "NOT_IN_CLUSTER":
      return "this node is not part of a cluster: run `shoal init` or `shoal join` first";
    case "NO_QUORUM":
    case "NOT_LEADER":
      return `the cluster has no leader or no quorum right now (${err.message}): retry shortly, or bring a majority of managers back`;
    default:
      return err.message;
  }
}

/**
 * A command that ran to its end with an outcome that is a failure of the work, not of a call (a task
 * of the service being created failed): the sentence for stderr and the exit code, for runCli.
 */
export class CommandFailed extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "CommandFailed";
  }
}
