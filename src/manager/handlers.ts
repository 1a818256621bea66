// Adapters from promise-returning functions to grpc-js handlers: every thrown ShoalError becomes a
// gRPC status with the stable code in metadata; anything else becomes INTERNAL without its text,
// so no internal detail (and never a secret) reaches a client.
import * as grpc from "@grpc/grpc-js";
import { ShoalError, isShoalError } from "../base/errors.js";
import { toGrpcError } from "../transport/errors.js";
import { leaderHintOf } from "../transport/leader.js";
import { LEADER_ADDR_METADATA } from "../transport/errors.js";

export interface HandlerLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The gRPC form of an error thrown by a handler, keeping a leader hint when it has one. */
export function handlerError(err: unknown, logger?: HandlerLogger): Partial<grpc.StatusObject> & Error {
  if (!isShoalError(err)) {
    logger?.error({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, "handler failed with an unexpected error");
    return toGrpcError(new ShoalError("INTERNAL", "internal error in the daemon; see its log"));
  }
  const hint = (err as ShoalError & { leaderAddr?: string }).leaderAddr ?? leaderHintOf(err);
  return toGrpcError(err, hint ? { [LEADER_ADDR_METADATA]: hint } : undefined);
}

export function unary<Req, Res>(fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>, logger?: HandlerLogger): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let promise: Promise<Res>;
    try {
      promise = fn(call.request, call);
    } catch (err) {
      callback(handlerError(err, logger));
      return;
    }
    promise.then(
      (res) => callback(null, res),
      (err: unknown) => callback(handlerError(err, logger)),
    );
  };
}

/** A NOT_LEADER error that carries the leader's address for the `shoal-leader-addr` metadata. */
export class LeaderRedirect extends ShoalError {
  constructor(readonly leaderAddr: string | undefined) {
    super(
      "NOT_LEADER",
      leaderAddr ? `this manager is not the leader; retry at ${leaderAddr}` : "this manager is not the leader and no leader is known yet; retry in a moment",
    );
  }
}
