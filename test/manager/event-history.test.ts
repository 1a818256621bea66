// The manager's event history and feed: the history is bounded, `since` and type filters select
// what is replayed, no_follow ends after the replay, a client that stops reading is ended with
// QUEUE_FULL instead of queueing without bound; the feed makes no events for the entries replayed
// at start, marks a snapshot reset, and tells a join token rotation without holding the token.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ShoalError } from "../../src/base/errors.js";
import { ManualClock } from "../../src/base/clock.js";
import type { ClusterEvent } from "../../src/proto/shoal/v1/control.js";
import { ObjectStore } from "../../src/state/index.js";
import { EventHistory, MAX_QUEUED_LIVE_EVENTS, type EventSink } from "../../src/manager/events/event-history.js";
import { EventFeed } from "../../src/manager/events/event-feed.js";
import { commit, makeCluster, makeNode, makeService, TOKEN_MARKER } from "../state/fixtures.js";

const ev = (type: string, ms: number, i: number): ClusterEvent => ({ type, action: "create", id: `id${i}`, name: `n${i}`, attributes: {}, time: new Date(ms), index: BigInt(i) });

class FakeSink implements EventSink {
  received: ClusterEvent[] = [];
  ended: { err?: ShoalError } | undefined;
  writable = true;
  drainListeners: (() => void)[] = [];
  write(events: ClusterEvent[]): boolean {
    this.received.push(...events);
    return this.writable;
  }
  onDrain(listener: () => void): void {
    this.drainListeners.push(listener);
  }
  end(err?: ShoalError): void {
    this.ended = err === undefined ? {} : { err };
  }
  drain(): void {
    this.writable = true;
    const ls = this.drainListeners;
    this.drainListeners = [];
    for (const l of ls) l();
  }
}

const tick = () => new Promise((r) => setImmediate(r));

test("the history keeps the last N events; since and types select the replay; no_follow ends after it", async () => {
  const h = new EventHistory(5);
  h.append([1, 2, 3, 4, 5, 6, 7].map((i) => ev(i % 2 === 0 ? "node" : "service", 1000 * i, i)));
  assert.equal(h.size, 5, "bounded");
  assert.deepEqual(h.since(0).map((e) => e.id), ["id3", "id4", "id5", "id6", "id7"]);
  const sink = new FakeSink();
  h.subscribe({ since: new Date(4000), types: ["node"], noFollow: true }, sink);
  assert.deepEqual(sink.received.map((e) => e.id), ["id4", "id6"]);
  assert.deepEqual(sink.ended, {}, "no_follow ends the stream after the replay");
  assert.equal(h.subscriberCount, 0);
  assert.throws(() => h.subscribe({ since: undefined, types: ["nodes"], noFollow: true }, new FakeSink()), (e: ShoalError) => e.code === "INVALID_ARGUMENT");
});

test("a following stream gets new events of its types (and the cluster markers), batched per tick, until cancelled", async () => {
  const h = new EventHistory();
  h.append([ev("service", 1, 1)]);
  const sink = new FakeSink();
  const cancel = h.subscribe({ since: undefined, types: ["service"], noFollow: false }, sink);
  assert.equal(sink.received.length, 0, "without since: only new events");
  h.append([ev("node", 2, 2), ev("service", 3, 3)]);
  h.append([{ ...ev("cluster", 4, 4), action: "reset" }]);
  await tick();
  assert.deepEqual(sink.received.map((e) => e.id), ["id3", "id4"]);
  cancel();
  assert.equal(h.subscriberCount, 0);
  h.append([ev("service", 5, 5)]);
  await tick();
  assert.equal(sink.received.length, 2);
});

test("a client that stops reading is ended with QUEUE_FULL; one that drains gets everything in order", async () => {
  const h = new EventHistory();
  const slow = new FakeSink();
  const ok = new FakeSink();
  h.subscribe({ since: undefined, types: [], noFollow: false }, slow);
  h.subscribe({ since: undefined, types: [], noFollow: false }, ok);
  slow.writable = false;
  ok.writable = false;
  let i = 0;
  for (let round = 0; round < 2 * MAX_QUEUED_LIVE_EVENTS && slow.ended === undefined; round++) {
    h.append([ev("task", i, i++)]);
    await tick();
    if (round % 100 === 0) ok.drain();
    ok.writable = false;
  }
  assert.equal(slow.ended?.err?.code, "QUEUE_FULL", "the stuck client was ended");
  assert.ok(slow.received.length < 10, "and held no more than what it was sent before it stopped reading");
  ok.drain();
  await tick();
  assert.equal(ok.ended, undefined, "a client that keeps draining stays");
  assert.deepEqual(ok.received.map((e) => Number(e.index)), [...Array(i).keys()], "in order, none lost");
});

test("the feed: no events for the start-up replay, events after it with the apply time, a reset marker, token rotation without the token", () => {
  const store = new ObjectStore();
  const cluster = makeCluster();
  commit(store, (tx) => tx.createCluster(cluster));
  const clock = new ManualClock(Date.parse("2026-05-01T00:00:00Z"));
  const history = new EventHistory();
  const warnings: string[] = [];
  const feed = new EventFeed(store, history, clock, { warn: (_o, m) => warnings.push(m) });
  // "Replayed" before goLive: no events.
  commit(store, (tx) => tx.createNode(makeNode()));
  feed.goLive(store.lastAppliedIndex);
  assert.deepEqual(history.since(0), []);
  clock.advance(5000);
  commit(store, (tx) => tx.createService(makeService("web")));
  const full = store.getCluster()!;
  commit(store, (tx) => tx.updateCluster({ ...full, rootCa: { ...full.rootCa!, joinTokens: { ...full.rootCa!.joinTokens!, manager: TOKEN_MARKER + "-new" } } }));
  store.restoreSnapshot(store.snapshot());
  const events = history.since(0);
  assert.deepEqual(events.map((e) => `${e.type} ${e.action}`), ["service create", "ca token-rotate", "cluster reset"]);
  assert.equal(events[0]!.time!.getTime(), Date.parse("2026-05-01T00:00:05Z"), "the apply time on this manager's clock");
  assert.equal(events[1]!.attributes["role"], "manager");
  assert.ok(!JSON.stringify(events.map((e) => e.attributes)).includes(TOKEN_MARKER));
  assert.deepEqual(warnings, []);
  feed.close();
  assert.equal(store.watcherCount, 0);
});
