// The ShoalError → gRPC status and → exit code maps are total and keep a version conflict apart
// from other refusals, and a code survives the trip over gRPC.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { SHOAL_ERROR_CODES, ShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { exitCodeFor, EXIT_CONFLICT, EXIT_GENERIC } from "../../src/cli/exit-codes.js";
import { ERROR_CODE_METADATA, fromGrpcError, grpcStatusFor, toGrpcError } from "../../src/transport/errors.js";

/** The codes that mean "something broke inside", the only ones allowed to map to INTERNAL / exit 1. */
const INTERNAL_CODES: ReadonlySet<ShoalErrorCode> = new Set(["INTERNAL", "RAFT_INVARIANT", "STORE_DECRYPT_FAILED", "KEY_FILE_INVALID", "CRYPTO_FAILED"]);
// Corrupted data (our store, our raft log, bytes a registry or a peer served against their digest) exits 1 too.
const GENERIC_EXIT_CODES: ReadonlySet<ShoalErrorCode> = new Set([...INTERNAL_CODES, "STORE_CORRUPT", "RAFT_LOG_CORRUPT", "DIGEST_MISMATCH", "PIECE_CORRUPT", "OUTCOME_UNKNOWN"]);

test("every code has its own gRPC status; only internal failures become INTERNAL", () => {
  for (const code of SHOAL_ERROR_CODES) {
    const status = grpcStatusFor(code);
    assert.equal(typeof status, "number", `${code} has no gRPC status`);
    assert.equal(status === grpc.status.INTERNAL, INTERNAL_CODES.has(code), `${code} → ${grpc.status[status]}`);
  }
});

test("every code has an exit code; only internal failures and unknown outcomes exit 1", () => {
  for (const code of SHOAL_ERROR_CODES) {
    const exit = exitCodeFor(code);
    assert.ok(Number.isInteger(exit) && exit >= 1 && exit <= 6, `${code} → ${exit}`);
    assert.equal(exit === EXIT_GENERIC, GENERIC_EXIT_CODES.has(code), `${code} → exit ${exit}`);
  }
});

test("a version conflict is ABORTED / exit 6, apart from FAILED_PRECONDITION", () => {
  assert.equal(grpcStatusFor("VERSION_CONFLICT"), grpc.status.ABORTED);
  assert.equal(grpcStatusFor("FAILED_PRECONDITION"), grpc.status.FAILED_PRECONDITION);
  assert.equal(exitCodeFor("VERSION_CONFLICT"), EXIT_CONFLICT);
});

test("a code crosses gRPC intact; an unknown code in metadata is not trusted", () => {
  for (const code of SHOAL_ERROR_CODES) {
    const back = fromGrpcError(toGrpcError(new ShoalError(code, `boom ${code}`)));
    assert.equal(back.code, code);
    assert.equal(back.message, `boom ${code}`);
  }
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA, "MADE_UP_BY_A_PEER");
  const forged = fromGrpcError(Object.assign(new Error("x"), { code: grpc.status.ABORTED, details: "x", metadata }));
  assert.equal(forged.code, "VERSION_CONFLICT", "falls back to the status, never casts the string");
  assert.ok(SHOAL_ERROR_CODES.includes(forged.code));
});

test("the maps are typed total: a map missing a code does not typecheck", () => {
  // @ts-expect-error -- Record<ShoalErrorCode, …> needs every code; this is what keeps the maps total.
  const partial: Record<ShoalErrorCode, number> = { INTERNAL: 1 };
  assert.equal(partial.INTERNAL, 1);
});
