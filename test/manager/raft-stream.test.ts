// The raft message stream between managers (real mTLS on 127.0.0.1): a peer link delivers many
// batches in order over one StreamRaftMessages call; the server applies the same checks as the unary
// call (role, sender's raft ID, batch size) and ends the stream on a refusal or a revocation, which
// the sender reports as unreachable; a peer without the stream still gets unary batches.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { GrpcRaftTransport, MAX_MESSAGES_PER_BATCH, raftServiceHandlers } from "../../src/manager/raft-transport.js";
import { MessageType, type Message, type RaftId } from "../../src/raft/core/types.js";
import type { RaftSender } from "../../src/raft/node/index.js";
import { RaftService, type RaftAck, type RaftMessageBatch } from "../../src/proto/shoal/v1/raft.js";
import { RevocationState } from "../../src/transport/revocation.js";
import type { SecureServer } from "../../src/transport/server.js";
import { messageFromProto } from "../../src/transport/raft-codec.js";
import { makePki, pkiServer, type NodeCert, type Pki } from "../transport/fixtures.js";
import { waitFor } from "../e2e/cluster.js";

const A: RaftId = 11n;
const B: RaftId = 22n;
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function heartbeat(from: RaftId, to: RaftId, seq: number): Message {
  return { type: MessageType.Heartbeat, to, from, term: 1, logTerm: 0, index: 0, entries: [], commit: seq, reject: false, rejectHint: 0, context: new Uint8Array(0) };
}

/** The receiving node: records messages; its membership maps A to the test manager certificate. */
class FakeNode {
  readonly received: Message[] = [];
  readonly senders: (RaftSender | undefined)[] = [];
  readonly unreachable: RaftId[] = [];
  constructor(private readonly members: { raftId: bigint; nodeId: string }[]) {}
  receive(m: Message, sender?: RaftSender): boolean {
    this.received.push(m);
    this.senders.push(sender);
    return true;
  }
  reportUnreachable(id: RaftId): void {
    this.unreachable.push(id);
  }
  reportSnapshot(): void {}
  status(): { members: { raftId: bigint; nodeId: string }[] } {
    return { members: this.members };
  }
}

describe("raft message stream", () => {
  let pki: Pki;
  let revocation: RevocationState;
  let server: SecureServer;
  let port: number;
  let receiver: FakeNode;
  const transports: GrpcRaftTransport[] = [];

  before(async () => {
    pki = makePki();
    revocation = new RevocationState();
    server = pkiServer(pki, { revocation });
    receiver = new FakeNode([
      { raftId: A, nodeId: pki.manager.nodeId },
      { raftId: B, nodeId: pki.server.nodeId },
    ]);
    server.addService(RaftService, raftServiceHandlers({ server, node: () => receiver, logger: quiet }) as unknown as grpc.UntypedServiceImplementation);
    port = await server.listen("127.0.0.1:0", "open");
  });
  after(async () => {
    for (const t of transports) t.close();
    await server.shutdown(200);
    pki.cleanup();
  });

  /** A sender (raft ID A) with `cert`, whose own node records what the link reports. */
  function sender(cert: NodeCert, targetPort = port, selfAddr?: string): { transport: GrpcRaftTransport; self: FakeNode } {
    const self = new FakeNode([]);
    const transport = new GrpcRaftTransport({
      clusterId: pki.clusterId,
      rootCaPem: pki.ca.rootCaPem,
      identity: () => ({ certPem: cert.certPem, keyPem: cert.keyPem }),
      revocation: new RevocationState(),
      logger: quiet,
      ...(selfAddr === undefined ? {} : { selfAddr }),
    });
    transport.bind(self);
    transport.addPeer(B, `127.0.0.1:${targetPort}`);
    transports.push(transport);
    return { transport, self };
  }

  test("thousands of messages sent over many turns arrive complete and in order", async () => {
    receiver.received.length = 0;
    const { transport, self } = sender(pki.manager);
    const total = 3 * MAX_MESSAGES_PER_BATCH + 100;
    for (let seq = 0; seq < total; ) {
      const burst = Math.min(total - seq, 1 + (seq % 97));
      transport.send(Array.from({ length: burst }, (_, i) => heartbeat(A, B, seq + i)));
      seq += burst;
      if (seq % 5 === 0) await new Promise((r) => setImmediate(r));
    }
    await waitFor("every message to arrive", () => receiver.received.length >= total || undefined, 20_000);
    assert.equal(receiver.received.length, total);
    assert.deepEqual(
      receiver.received.map((m) => m.commit),
      Array.from({ length: total }, (_, i) => i),
    );
    assert.deepEqual(self.unreachable, []);
  });

  test("a message that speaks for another member ends the stream; the sender reports the peer and recovers", async () => {
    receiver.received.length = 0;
    const { transport, self } = sender(pki.manager);
    transport.send([heartbeat(A, B, 1)]);
    await waitFor("the first message", () => receiver.received.length === 1 || undefined);
    // A's certificate may not speak for B's raft ID.
    transport.send([heartbeat(B, B, 2)]);
    await waitFor("the refusal to be reported", () => self.unreachable.includes(B) || undefined);
    assert.deepEqual(receiver.received.map((m) => m.commit), [1]);
    transport.send([heartbeat(A, B, 3)]);
    await waitFor("delivery on a new stream", () => receiver.received.length === 2 || undefined);
    assert.equal(receiver.received[1]!.commit, 3);
  });

  test("each message comes with the sender's advertised address and certificate node ID; a malformed address is dropped", async () => {
    receiver.received.length = 0;
    receiver.senders.length = 0;
    sender(pki.manager, port, "127.0.0.1:4242").transport.send([heartbeat(A, B, 1), heartbeat(A, B, 2)]);
    await waitFor("both messages", () => receiver.received.length === 2 || undefined);
    assert.deepEqual(receiver.senders, [
      { addr: "127.0.0.1:4242", nodeId: pki.manager.nodeId },
      { addr: "127.0.0.1:4242", nodeId: pki.manager.nodeId },
    ]);
    sender(pki.manager, port, "not an address\n").transport.send([heartbeat(A, B, 3)]);
    await waitFor("the third message", () => receiver.received.length === 3 || undefined);
    assert.equal(receiver.senders[2], undefined);
  });

  test("a worker certificate never delivers a raft message", async () => {
    receiver.received.length = 0;
    const { transport, self } = sender(pki.worker);
    transport.send([heartbeat(A, B, 1)]);
    await waitFor("the refusal to be reported", () => self.unreachable.includes(B) || undefined);
    assert.equal(receiver.received.length, 0);
  });

  test("revoking the sender ends its open stream at once, and nothing it sends later arrives", async () => {
    receiver.received.length = 0;
    const { transport, self } = sender(pki.manager);
    transport.send([heartbeat(A, B, 1)]);
    await waitFor("the first message", () => receiver.received.length === 1 || undefined);
    assert.equal(server.authorizer.openCallCount >= 1, true);
    // The last test of this server: the manager certificate stays revoked here.
    revocation.revoke({ nodeIds: [pki.manager.nodeId] });
    await waitFor("the stream end to be reported", () => self.unreachable.includes(B) || undefined);
    transport.send([heartbeat(A, B, 2)]);
    await waitFor("the refused reopen to be reported", () => self.unreachable.filter((id) => id === B).length >= 2 || undefined);
    assert.deepEqual(receiver.received.map((m) => m.commit), [1]);
  });
});

describe("raft message stream fallback", () => {
  test("a peer that serves only ProcessRaftMessages still gets every message after the first refusal", async () => {
    const pki = makePki();
    const revocation = new RevocationState();
    const server = pkiServer(pki, { revocation });
    const received: Message[] = [];
    // An older manager: the unary call only, no stream service.
    server.addService(RaftService, {
      processRaftMessages: (call: grpc.ServerUnaryCall<RaftMessageBatch, RaftAck>, cb: grpc.sendUnaryData<RaftAck>) => {
        for (const p of call.request.messages) received.push(messageFromProto(p) as unknown as Message);
        cb(null, {});
      },
    });
    const port = await server.listen("127.0.0.1:0", "open");
    const unreachable: RaftId[] = [];
    const transport = new GrpcRaftTransport({
      clusterId: pki.clusterId,
      rootCaPem: pki.ca.rootCaPem,
      identity: () => ({ certPem: pki.manager.certPem, keyPem: pki.manager.keyPem }),
      revocation: new RevocationState(),
      logger: quiet,
    });
    transport.bind({ receive: () => true, reportUnreachable: (id) => void unreachable.push(id), reportSnapshot: () => undefined });
    transport.addPeer(B, `127.0.0.1:${port}`);
    try {
      transport.send([heartbeat(A, B, 0)]);
      await waitFor("the missing stream to be reported", () => unreachable.length > 0 || undefined);
      for (let seq = 1; seq <= 50; seq++) transport.send([heartbeat(A, B, seq)]);
      await waitFor("the unary batches", () => received.length >= 50 || undefined);
      assert.deepEqual(
        received.map((m) => m.commit).filter((c) => c > 0),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
    } finally {
      transport.close();
      await server.shutdown(200);
      pki.cleanup();
    }
  });
});
