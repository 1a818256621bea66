// A follower acknowledges only entries its Ready persists. It steps a leader's Append (the answer
// waits for this Ready's save), then, before saving, a newer leader's Append that truncates those
// entries: the older term's acknowledgement must not leave, because after the save the follower
// holds the newer entry at that index, not the one it would acknowledge. The simulator found this
// through RaftNode (a paused follower that woke with both Appends queued).
import { test } from "node:test";
import assert from "node:assert/strict";
import { EntryType, MessageType, type Message } from "../../src/raft/core/types.js";
import { Cluster } from "./env.js";

function message(m: Partial<Message> & Pick<Message, "type" | "to" | "from" | "term">): Message {
  return { logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array(), ...m };
}

test("an acknowledgement of entries a newer leader truncated before they were saved is never sent", () => {
  const c = new Cluster({ voters: [1n, 2n, 3n] });
  for (const id of [1n, 2n, 3n]) c.addNode(id);
  c.node(1n).core.campaign();
  c.stabilize(undefined);
  const follower = c.node(2n).core;
  const term = follower.status().hardState.term;
  const last = c.node(1n).core.status().lastIndex;

  // The leader's next entry reaches node 2, which steps it but has not yet handled its Ready.
  c.node(1n).core.propose(new TextEncoder().encode("from the old leader"));
  c.processReady(1n, undefined);
  c.deliver(2n, undefined);
  assert.equal(follower.status().lastIndex, last + 1);

  // Node 3 leads a newer term without that entry: its vote request, then its Append at the same index.
  follower.step(message({ type: MessageType.Vote, to: 2n, from: 3n, term: term + 1, index: last, logTerm: term }));
  const newer = { term: term + 1, index: last + 1, type: EntryType.Normal, data: new TextEncoder().encode("from the new leader") };
  follower.step(message({ type: MessageType.Append, to: 2n, from: 3n, term: term + 1, index: last, logTerm: term, entries: [newer] }));

  const rd = follower.ready();
  const saved = rd.entries.find((e) => e.index === last + 1);
  assert.equal(saved?.term, term + 1, "the Ready persists the newer leader's entry");
  const acks = rd.messages.filter((m) => m.type === MessageType.AppendResponse && !m.reject);
  for (const ack of acks) {
    assert.ok(!(ack.term === term && ack.index > last), `an acknowledgement of index ${ack.index} in term ${ack.term} would leave, but that entry is not what is saved`);
  }
  assert.ok(acks.some((m) => m.term === term + 1 && m.index === last + 1), "the newer leader's entry is acknowledged");
});
