// Leadership: the loops run only while this manager leads, each with proposals fenced by its term;
// losing leadership stops them at once (no proposal, timer or watch event after), and a proposal made
// with an old term is refused, by the loop context and by the raft-level fence alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { SeededRandom } from "../../src/base/random.js";
import { applyAtOnce } from "../../src/manager/leadership/apply-at-once.js";
import { LeaderLoops } from "../../src/manager/leadership/leader-loops.js";
import { Service } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, type LeaderLoopFactory, type LoopContext } from "../../src/state/index.js";
import { Harness, idOf, makeNode } from "./leader-loop-harness.js";

function recorder(): { factory: LeaderLoopFactory; contexts: LoopContext[]; events: string[]; stops: number } {
  const out = { contexts: [] as LoopContext[], events: [] as string[], stops: 0, factory: undefined as unknown as LeaderLoopFactory };
  out.factory = {
    name: "probe",
    start(ctx) {
      out.contexts.push(ctx);
      ctx.watch({ tables: ["nodes"] }, (e) => out.events.push(`${ctx.term}:${e.kind}`));
      ctx.interval(() => out.events.push(`${ctx.term}:tick`), 1000);
      return { stop: () => void out.stops++, busy: false, idle: async () => undefined };
    },
  };
  return out;
}

test("loops start with the term, stop when leadership is lost, and an old term's proposals are refused", async () => {
  const clock = new ManualClock(0);
  const store = new ObjectStore({ clock });
  const raft = applyAtOnce(store, clock, 1);
  const probe = recorder();
  const loops = new LeaderLoops({ store, propose: raft.propose, clock, random: new SeededRandom(1), logger: pino({ level: "silent" }), loops: [probe.factory] });
  loops.leaderChanged(true, 1);
  const first = probe.contexts[0]!;
  assert.equal(first.term, 1);
  await first.propose((tx) => tx.createNode(makeNode("n1")));
  clock.advance(1000);
  assert.deepEqual(probe.events, ["1:create", "1:tick"]);

  loops.leaderChanged(false, 2);
  assert.equal(probe.stops, 1);
  assert.equal(first.stopped, true);
  assert.equal(clock.pendingTimers, 0, "the loop's timers are cancelled");
  await assert.rejects(first.propose((tx) => tx.createNode(makeNode("n2"))), (err) => isShoalError(err, "NOT_LEADER"));
  assert.equal(store.getNode(idOf("n2")), undefined);
  // Another manager writes meanwhile: the stopped loop hears nothing.
  await raft.propose((tx) => tx.createNode(makeNode("n3")), { term: 1 });
  clock.advance(5000);
  assert.deepEqual(probe.events, ["1:create", "1:tick"]);

  // Leader again in term 3: a new context; the raft fence refuses anything still carrying term 1.
  raft.term = 3;
  loops.leaderChanged(true, 3);
  const second = probe.contexts[1]!;
  assert.equal(second.term, 3);
  await second.propose((tx) => tx.createNode(makeNode("n4")));
  await assert.rejects(raft.propose((tx) => tx.createNode(makeNode("n5")), { term: 1 }), (err) => isShoalError(err, "NOT_LEADER"));
  assert.equal(store.getNode(idOf("n5")), undefined);
  loops.stop();
  assert.equal(probe.stops, 2);
});

test("update() re-reads and retries on VERSION_CONFLICT, and ends without writing when build says there is nothing to do", async () => {
  const clock = new ManualClock(0);
  const store = new ObjectStore({ clock });
  const raft = applyAtOnce(store, clock, 1);
  const probe = recorder();
  const loops = new LeaderLoops({ store, propose: raft.propose, clock, random: new SeededRandom(1), logger: pino({ level: "silent" }), loops: [probe.factory] });
  loops.leaderChanged(true, 1);
  const ctx = probe.contexts[0]!;
  await ctx.propose((tx) => tx.createService(Service.fromPartial({ id: idOf("s1"), spec: { name: "s1", replicas: 1 } })));
  let attempts = 0;
  await ctx.update((tx) => {
    attempts++;
    const s = tx.getService(idOf("s1"))!;
    if (attempts === 1) {
      // Someone else commits between this read and our write: our version is now stale.
      const other = store.getService(idOf("s1"))!;
      other.spec!.replicas = 7;
      const bytes = store.prepare((t2) => t2.updateService(other));
      s.spec!.replicas = 2;
      tx.updateService(s);
      store.apply(bytes, { index: store.lastAppliedIndex + 1 });
      return;
    }
    s.spec!.replicas = s.spec!.replicas + 1;
    tx.updateService(s);
  });
  assert.equal(attempts, 2);
  assert.equal(store.getService(idOf("s1"))!.spec!.replicas, 8, "the retry saw the other write");
  const before = raft.proposals;
  assert.equal(await ctx.update(() => false), undefined);
  assert.equal(raft.proposals, before);
  loops.stop();
});

test("the orchestrator and scheduler stop with leadership and the new leader carries on from the store", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("n1"));
  const id = await h.createService({ name: "web", replicas: 2 });
  assert.equal(h.live(id).length, 2);
  h.loops.leaderChanged(false, 2);
  await h.updateService(id, (s) => (s.spec!.replicas = 4));
  assert.equal(h.live(id).length, 2, "no leader: nothing reconciles");
  h.direct.term = 3;
  h.loops.leaderChanged(true, 3);
  await h.settle();
  assert.equal(h.live(id).length, 4);
  assert.ok(h.live(id).every((x) => x.nodeId === idOf("n1")));
});
