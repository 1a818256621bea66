// MemberTable.learn: a member that has not applied a peer's AddLearner yet takes the peer's address
// from its messages, so that it can answer a leader it never saw added; never for itself, a member
// it already knows or a removed ID, and the member's own entry (AddLearner) replaces it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfChangeType, type Message, type RaftId } from "../../src/raft/core/types.js";
import { MemberTable } from "../../src/raft/node/member-table.js";
import { encodeMemberContext } from "../../src/raft/node/membership.js";
import type { RaftTransport } from "../../src/raft/node/transport.js";

class RecordingTransport implements RaftTransport {
  readonly peers = new Map<RaftId, string>();
  send(_messages: Message[]): void {}
  addPeer(id: RaftId, addr: string): void {
    this.peers.set(id, addr);
  }
  removePeer(id: RaftId): void {
    this.peers.delete(id);
  }
}

function table(): { members: MemberTable; transport: RecordingTransport } {
  const transport = new RecordingTransport();
  const members = new MemberTable(1n, transport);
  members.load([{ raftId: 1n, nodeId: "n1", addr: "h1:1" }, { raftId: 2n, nodeId: "n2", addr: "h2:1" }], [9n]);
  members.start({ voters: [1n, 2n], learners: [] });
  return { members, transport };
}

test("an unknown sender's address is learned and handed to the transport", () => {
  const { members, transport } = table();
  assert.equal(members.addr(5n), undefined);
  assert.equal(members.learn(5n, { addr: "h5:1", nodeId: "n5" }), true);
  assert.equal(members.addr(5n), "h5:1");
  assert.equal(transport.peers.get(5n), "h5:1");
  // The same address again changes nothing; a new one (the peer moved) replaces it.
  assert.equal(members.learn(5n, { addr: "h5:1" }), false);
  assert.equal(members.learn(5n, { addr: "h5:2" }), true);
  assert.equal(transport.peers.get(5n), "h5:2");
  assert.equal(members.isMember(5n), false, "a learned address does not make a member");
});

test("self, known members and removed IDs are never learned", () => {
  const { members, transport } = table();
  assert.equal(members.learn(1n, { addr: "evil:1" }), false);
  assert.equal(members.learn(2n, { addr: "evil:1" }), false);
  assert.equal(members.learn(9n, { addr: "evil:1" }), false);
  assert.equal(members.addr(2n), "h2:1");
  assert.equal(members.addr(9n), undefined);
  assert.deepEqual([...transport.peers.entries()], [[2n, "h2:1"]]);
});

test("the member's AddLearner replaces a learned address; its removal forgets it", () => {
  const { members, transport } = table();
  members.learn(5n, { addr: "h5:old" });
  members.applied({ type: ConfChangeType.AddLearner, nodeId: 5n, context: encodeMemberContext({ raftId: 5n, nodeId: "n5", addr: "h5:1" }) }, { voters: [1n, 2n], learners: [5n] });
  assert.equal(members.addr(5n), "h5:1");
  assert.equal(transport.peers.get(5n), "h5:1");
  members.learn(6n, { addr: "h6:1" });
  members.applied({ type: ConfChangeType.RemoveNode, nodeId: 6n, context: new Uint8Array(0) }, { voters: [1n, 2n], learners: [5n], removed: [6n] });
  assert.equal(members.addr(6n), undefined);
  assert.equal(transport.peers.has(6n), false);
  assert.equal(members.learn(6n, { addr: "h6:1" }), false);
});

test("a restored snapshot that removes a learned ID drops its address", () => {
  const { members, transport } = table();
  members.learn(7n, { addr: "h7:1" });
  members.restored({ members: [{ raftId: 1n, nodeId: "n1", addr: "h1:1" }, { raftId: 2n, nodeId: "n2", addr: "h2:1" }], removedIds: [7n] }, { voters: [1n, 2n], learners: [] });
  assert.equal(members.addr(7n), undefined);
  assert.equal(transport.peers.has(7n), false);
});
