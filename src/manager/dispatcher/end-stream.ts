// Ending a server stream with an error status the client sees.
import type * as grpc from "@grpc/grpc-js";

/**
 * Ends a server stream with an error status. (`destroy(err)` would drop the status: grpc-js sends
 * it from `_final`, which a destroyed stream never runs.)
 */
export function endStream(call: grpc.ServerWritableStream<unknown, unknown>, err: Partial<grpc.StatusObject> & Error): void {
  if (call.writableEnded || call.destroyed) return;
  call.emit("error", err);
}
