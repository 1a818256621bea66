// Carries ShoalError across gRPC: the status code follows the error's meaning, the stable Shoal
// code rides in metadata `shoal-error-code`, and the message is the status details. Messages are
// already free of secrets when they are created, so nothing is filtered here.
import * as grpc from "@grpc/grpc-js";
import { isShoalErrorCode, ShoalError, type ShoalErrorCode } from "../base/errors.js";

export const ERROR_CODE_METADATA = "shoal-error-code";
export const LEADER_ADDR_METADATA = "shoal-leader-addr";

/** Total: a new code does not typecheck until it is given a status here. */
const STATUS_BY_CODE: Record<ShoalErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  TOKEN_MALFORMED: grpc.status.INVALID_ARGUMENT,
  TOKEN_VERSION: grpc.status.INVALID_ARGUMENT,
  TOKEN_DIGEST_MISMATCH: grpc.status.PERMISSION_DENIED,
  TOKEN_INVALID: grpc.status.PERMISSION_DENIED,
  TOKEN_ROTATED: grpc.status.PERMISSION_DENIED,
  TOKEN_EXPIRED: grpc.status.PERMISSION_DENIED,
  UNLOCK_KEY_MALFORMED: grpc.status.INVALID_ARGUMENT,
  UNLOCK_KEY_WRONG: grpc.status.PERMISSION_DENIED,
  PEM_INVALID: grpc.status.INVALID_ARGUMENT,
  CSR_INVALID: grpc.status.INVALID_ARGUMENT,
  METRICS_ADDR_NOT_LOOPBACK: grpc.status.INVALID_ARGUMENT,
  CERT_INVALID: grpc.status.UNAUTHENTICATED,
  CERT_EXPIRED: grpc.status.UNAUTHENTICATED,
  CERT_NOT_YET_VALID: grpc.status.UNAUTHENTICATED,
  CERT_UNTRUSTED: grpc.status.UNAUTHENTICATED,
  CERT_WRONG_CLUSTER: grpc.status.PERMISSION_DENIED,
  CERT_WRONG_ROLE: grpc.status.PERMISSION_DENIED,
  CERT_REVOKED: grpc.status.PERMISSION_DENIED,
  CA_KEY_MISMATCH: grpc.status.INVALID_ARGUMENT,
  CA_KEY_UNSUPPORTED: grpc.status.INVALID_ARGUMENT,
  CA_CERT_NOT_CA: grpc.status.INVALID_ARGUMENT,
  EXTERNAL_CA_MISMATCH: grpc.status.FAILED_PRECONDITION,
  EXTERNAL_CA_UNAVAILABLE: grpc.status.UNAVAILABLE,
  CA_KEY_NOT_HELD: grpc.status.FAILED_PRECONDITION,
  STORE_CORRUPT: grpc.status.DATA_LOSS,
  STORE_DECRYPT_FAILED: grpc.status.INTERNAL,
  STORE_CLOSED: grpc.status.UNAVAILABLE,
  STORE_LOCKED: grpc.status.FAILED_PRECONDITION,
  KEY_FILE_INVALID: grpc.status.INTERNAL,
  CRYPTO_FAILED: grpc.status.INTERNAL,
  LOCKED: grpc.status.FAILED_PRECONDITION,
  NOT_LEADER: grpc.status.UNAVAILABLE,
  NO_QUORUM: grpc.status.UNAVAILABLE,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  PROPOSAL_DROPPED: grpc.status.UNAVAILABLE,
  OUTCOME_UNKNOWN: grpc.status.UNAVAILABLE,
  PROPOSAL_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  MESSAGE_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  QUEUE_FULL: grpc.status.RESOURCE_EXHAUSTED,
  RAFT_INVARIANT: grpc.status.INTERNAL,
  RAFT_LOG_CORRUPT: grpc.status.DATA_LOSS,
  TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  IMAGE_NOT_FOUND: grpc.status.NOT_FOUND,
  REGISTRY_UNAVAILABLE: grpc.status.UNAVAILABLE,
  DIGEST_MISMATCH: grpc.status.DATA_LOSS,
  GRANT_INVALID: grpc.status.PERMISSION_DENIED,
  GRANT_WRONG_CLUSTER: grpc.status.PERMISSION_DENIED,
  GRANT_WRONG_ZONE: grpc.status.PERMISSION_DENIED,
  GRANT_WRONG_NODE: grpc.status.PERMISSION_DENIED,
  GRANT_WRONG_BLOB: grpc.status.PERMISSION_DENIED,
  GRANT_EXPIRED: grpc.status.PERMISSION_DENIED,
  PEER_WRONG_ZONE: grpc.status.PERMISSION_DENIED,
  PEER_OVERLOADED: grpc.status.RESOURCE_EXHAUSTED,
  PIECE_CORRUPT: grpc.status.DATA_LOSS,
  PREFETCH_NO_SOURCE: grpc.status.UNAVAILABLE,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  VERSION_CONFLICT: grpc.status.ABORTED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  NOT_MANAGER: grpc.status.FAILED_PRECONDITION,
  NOT_IN_CLUSTER: grpc.status.FAILED_PRECONDITION,
  ALREADY_IN_CLUSTER: grpc.status.FAILED_PRECONDITION,
  INTERNAL: grpc.status.INTERNAL,
};

export function grpcStatusFor(code: ShoalErrorCode): grpc.status {
  return STATUS_BY_CODE[code];
}

/** Turns any thrown value into a gRPC error object for a handler's callback or `emit("error")`. */
export function toGrpcError(err: unknown, extra?: Record<string, string>): Partial<grpc.StatusObject> & Error {
  const shoal = err instanceof ShoalError ? err : new ShoalError("INTERNAL", "internal error");
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA, shoal.code);
  for (const [k, v] of Object.entries(extra ?? {})) metadata.set(k, v);
  return Object.assign(new Error(shoal.message), { code: grpcStatusFor(shoal.code), details: shoal.message, metadata });
}

/** Turns a gRPC client error back into a ShoalError with the server's stable code when it sent one. */
export function fromGrpcError(err: unknown): ShoalError {
  if (err instanceof ShoalError) return err;
  const e = err as Partial<grpc.ServiceError> | undefined;
  const sent = e?.metadata?.get(ERROR_CODE_METADATA)?.[0];
  const details = e?.details ?? (err instanceof Error ? err.message : String(err));
  // A code we do not know (a newer or hostile peer) falls back to the status below, never a cast.
  if (typeof sent === "string" && isShoalErrorCode(sent)) return new ShoalError(sent, details, { cause: err });
  switch (e?.code) {
    case grpc.status.PERMISSION_DENIED:
      return new ShoalError("PERMISSION_DENIED", details, { cause: err });
    case grpc.status.UNAUTHENTICATED:
      return new ShoalError("UNAUTHENTICATED", details, { cause: err });
    case grpc.status.DEADLINE_EXCEEDED:
      return new ShoalError("TIMEOUT", details, { cause: err });
    case grpc.status.UNAVAILABLE:
      return new ShoalError("UNAVAILABLE", details, { cause: err });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new ShoalError("MESSAGE_TOO_LARGE", details, { cause: err });
    case grpc.status.INVALID_ARGUMENT:
      return new ShoalError("INVALID_ARGUMENT", details, { cause: err });
    case grpc.status.NOT_FOUND:
      return new ShoalError("NOT_FOUND", details, { cause: err });
    case grpc.status.ABORTED:
      return new ShoalError("VERSION_CONFLICT", details, { cause: err });
    default:
      return new ShoalError("INTERNAL", details, { cause: err });
  }
}

export function leaderAddrOf(err: unknown): string | undefined {
  const md = (err as Partial<grpc.ServiceError> | undefined)?.metadata;
  const v = md?.get(LEADER_ADDR_METADATA)?.[0];
  return typeof v === "string" && v.length > 0 ? v : undefined;
}
