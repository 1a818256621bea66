// The local socket's `shoal events` stream as an EventSink: messages go out through the call, with
// gRPC's own flow control telling when the client's buffer is full (write returns false, then
// 'drain'), so a slow reader is seen and ended by the history instead of filling memory.
import type * as grpc from "@grpc/grpc-js";
import type { ShoalError } from "../base/errors.js";
import type { ClusterEvent, EventsMessage, EventsRequest } from "../proto/shoal/v1/control.js";
import type { EventSink } from "../manager/events/event-history.js";
import { handlerError } from "../manager/handlers.js";

export function eventsCallSink(call: grpc.ServerWritableStream<EventsRequest, EventsMessage>): EventSink {
  const gone = (): boolean => call.cancelled || call.writableEnded || call.destroyed;
  return {
    write: (events: ClusterEvent[]) => (gone() ? true : call.write({ events })),
    onDrain: (listener) => {
      call.once("drain", listener);
    },
    end: (err?: ShoalError) => {
      if (gone()) return;
      if (err === undefined) call.end();
      // `destroy(err)` would drop the status; emitting it sends it (see dispatcher/end-stream.ts).
      else call.emit("error", handlerError(err));
    },
  };
}
