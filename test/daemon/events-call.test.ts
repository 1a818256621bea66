// Back-pressure of `shoal events` over a real gRPC stream on a unix socket: a client that stops
// reading fills HTTP/2 flow control, the server's writes report it, and the history ends that client
// with QUEUE_FULL (its status reaches the client) instead of queueing events without bound; a
// client that reads gets every event in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ControlClient, ControlService, type ClusterEvent, type EventsMessage, type EventsRequest } from "../../src/proto/shoal/v1/control.js";
import { EventHistory, MAX_QUEUED_LIVE_EVENTS } from "../../src/manager/events/event-history.js";
import { eventsCallSink } from "../../src/daemon/events-call.js";
import { fromGrpcError } from "../../src/transport/errors.js";

test("a client that stops reading is disconnected with QUEUE_FULL; a reading one gets everything", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-events-call-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const history = new EventHistory();
  const server = new grpc.Server();
  server.addService(ControlService, {
    events: (call: grpc.ServerWritableStream<EventsRequest, EventsMessage>) => {
      const cancel = history.subscribe(call.request, eventsCallSink(call));
      call.on("cancelled", cancel);
    },
  } as unknown as grpc.UntypedServiceImplementation);
  const socket = join(dir, "s.sock");
  await new Promise<void>((ok, fail) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? fail(e) : ok())));
  t.after(() => server.forceShutdown());
  // Two clients, as two `shoal events` processes would be (one connection each).
  const slowClient = new ControlClient(`unix://${socket}`, grpc.credentials.createInsecure());
  const fastClient = new ControlClient(`unix://${socket}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  t.after(() => slowClient.close());
  t.after(() => fastClient.close());

  const slow = slowClient.events({ since: undefined, types: [], noFollow: false });
  const fast = fastClient.events({ since: undefined, types: [], noFollow: false });
  let fastCount = 0;
  let lastIndex = -1;
  let inOrder = true;
  fast.on("data", (m: EventsMessage) => {
    for (const e of m.events) {
      if (Number(e.index) !== lastIndex + 1) inOrder = false;
      lastIndex = Number(e.index);
      fastCount++;
    }
  });
  fast.on("error", () => undefined);
  let slowError: Error | undefined;
  slow.on("error", (e) => (slowError = e));
  slow.on("data", () => slow.pause()); // reads one message, then nothing
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(history.subscriberCount, 2);

  let index = 0;
  const pad = "x".repeat(200);
  const batch = (): ClusterEvent[] => Array.from({ length: 50 }, () => ({ type: "task", action: "state", id: "t", name: "web.1", attributes: { pad }, time: new Date(), index: BigInt(index++) }));
  for (let round = 0; round < 2000 && history.subscriberCount === 2; round++) {
    history.append(batch());
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(history.subscriberCount, 1, `the stuck client was ended (after ${index} events)`);
  assert.ok(index > MAX_QUEUED_LIVE_EVENTS, "only once more than the bound waited for it");
  // Read on, so that the status behind the buffered messages arrives.
  slow.removeAllListeners("data");
  slow.on("data", () => undefined);
  slow.resume();
  await new Promise<void>((r) => (slowError !== undefined ? r() : slow.once("error", () => r())));
  assert.equal(fromGrpcError(slowError as grpc.ServiceError).code, "QUEUE_FULL");
  await new Promise<void>((r) => {
    const check = (): void => (fastCount === index ? r() : void setTimeout(check, 20));
    check();
  });
  assert.ok(inOrder, "the reading client got every event in order");
  fast.cancel();
});
