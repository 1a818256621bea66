// The in-process loopback transport: ordered asynchronous delivery, the per-peer bound with
// unreachable reports on overflow, snapshot delivery reports, and cut links.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { LoopbackNetwork, type RaftInbound } from "../../src/raft/node/transport.js";
import { MessageType, type Message, type RaftId } from "../../src/raft/core/types.js";

function msg(from: RaftId, to: RaftId, index: number, type = MessageType.Append): Message {
  return { type, from, to, term: 1, logTerm: 0, index, entries: [], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array(0) };
}

class Recorder implements RaftInbound {
  received: Message[] = [];
  unreachable: RaftId[] = [];
  snapshots: Array<[RaftId, boolean]> = [];
  accept = true;
  receive(m: Message): boolean {
    if (this.accept) this.received.push(m);
    return this.accept;
  }
  reportUnreachable(id: RaftId): void {
    this.unreachable.push(id);
  }
  reportSnapshot(id: RaftId, ok: boolean): void {
    this.snapshots.push([id, ok]);
  }
}

test("delivers in order, asynchronously, and reports overflow and unknown peers as unreachable", async () => {
  const net = new LoopbackNetwork({ maxQueuedPerPeer: 3 });
  const a = new Recorder();
  const b = new Recorder();
  net.attach(1n, a);
  net.attach(2n, b);
  const t = net.transportFor(1n);
  t.addPeer(2n, "b");
  t.send([msg(1n, 2n, 1), msg(1n, 2n, 2), msg(1n, 2n, 3), msg(1n, 2n, 4)]);
  assert.equal(b.received.length, 0, "delivery is not synchronous");
  assert.deepEqual(a.unreachable, [2n], "the fourth message overflowed the bound of 3");
  await nextMacrotask();
  assert.deepEqual(b.received.map((m) => m.index), [1, 2, 3]);
  t.send([msg(1n, 3n, 9)]);
  assert.deepEqual(a.unreachable, [2n, 3n], "a peer never added is unreachable");
  t.removePeer(2n);
  t.send([msg(1n, 2n, 5)]);
  assert.deepEqual(a.unreachable, [2n, 3n, 2n]);
  assert.throws(() => t.send([msg(2n, 1n, 1)]), /asked to send a message from/);
});

test("snapshots report success or failure; detached nodes and cut links are unreachable", async () => {
  const net = new LoopbackNetwork();
  const a = new Recorder();
  const b = new Recorder();
  net.attach(1n, a);
  net.attach(2n, b);
  const t = net.transportFor(1n);
  t.addPeer(2n, "b");
  t.send([msg(1n, 2n, 1, MessageType.Snapshot)]);
  await nextMacrotask();
  assert.deepEqual(a.snapshots, [[2n, true]]);
  net.setLink(1n, 2n, false);
  t.send([msg(1n, 2n, 2, MessageType.Snapshot)]);
  await nextMacrotask();
  assert.deepEqual(a.snapshots, [[2n, true], [2n, false]]);
  assert.deepEqual(a.unreachable, [2n]);
  net.setLink(1n, 2n, true);
  b.accept = false; // the receiver's own queue is full
  t.send([msg(1n, 2n, 3)]);
  await nextMacrotask();
  assert.deepEqual(a.unreachable, [2n, 2n]);
  b.accept = true;
  net.detach(2n);
  t.send([msg(1n, 2n, 4)]);
  await nextMacrotask();
  assert.deepEqual(a.unreachable, [2n, 2n, 2n]);
  assert.deepEqual(b.received.map((m) => m.index), [1]);
});
