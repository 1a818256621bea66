// Watchers: events in apply order with old objects and raft indexes, filters, reset on restore,
// and a slow watcher closed with QUEUE_FULL at its bound.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { ObjectStore, type StoreEvent } from "../../src/state/index.js";
import { commit, makeService, makeTask } from "./fixtures.js";

async function take(iterator: AsyncIterator<StoreEvent>, count: number): Promise<StoreEvent[]> {
  const out: StoreEvent[] = [];
  for (let i = 0; i < count; i++) {
    const r = await iterator.next();
    assert.equal(r.done, false);
    out.push(r.value);
  }
  return out;
}

test("events arrive in apply order with kind, object, old object and raft index", async () => {
  const store = new ObjectStore();
  const watch = store.watch();
  const it = watch.events[Symbol.asyncIterator]();
  const service = makeService("web");
  commit(store, (tx) => tx.createService(service));
  const read = store.getService(service.id)!;
  read.spec!.replicas = 3;
  commit(store, (tx) => tx.updateService(read));
  for (let i = 0; i < 50; i++) commit(store, (tx) => tx.putValue(`k${i}`, Buffer.from([i])));
  commit(store, (tx) => tx.removeService(service.id));
  const events = await take(it, 53);
  assert.deepEqual(events.map((e) => e.index), Array.from({ length: 53 }, (_, i) => i + 1));
  const [created, updated] = events;
  assert.ok(created!.kind === "create" && created!.table === "services");
  assert.ok(updated!.kind === "update" && updated!.table === "services");
  assert.equal((updated!.oldObject as { spec: { replicas: number } }).spec.replicas, 1);
  assert.equal((updated!.object as { spec: { replicas: number } }).spec.replicas, 3);
  assert.deepEqual(events.slice(2, 52).map((e) => e.kind !== "reset" && e.table === "kv" && e.object.key), Array.from({ length: 50 }, (_, i) => `k${i}`));
  assert.equal(events[52]!.kind, "remove");
  watch.close();
  assert.equal((await it.next()).done, true);
  assert.equal(store.watcherCount, 0);
});

test("a waiting reader is woken by the next apply; failed proposals produce no events", async () => {
  const store = new ObjectStore();
  const watch = store.watch();
  const it = watch.events[Symbol.asyncIterator]();
  const pending = it.next();
  const stale = store.prepare((tx) => tx.putValue("k", Buffer.from("x"), { ifAbsent: true }));
  commit(store, (tx) => tx.putValue("k", Buffer.from("first")));
  assert.equal(store.apply(stale, { index: 2 }).ok, false);
  commit(store, (tx) => tx.putValue("j", Buffer.from("y")));
  const first = await pending;
  assert.equal(first.value.index, 1);
  const second = await it.next();
  assert.equal(second.value.index, 3, "nothing for the refused proposal at index 2");
  watch.close();
});

test("filters select tables, kinds and a predicate", async () => {
  const store = new ObjectStore();
  const service = makeService("web");
  commit(store, (tx) => tx.createService(service));
  const nodeId = "n".repeat(25);
  const tasksOfNode = store.watch({ tables: ["tasks"], kinds: ["create"], match: (c) => c.table === "tasks" && c.object.nodeId === nodeId });
  const it = tasksOfNode.events[Symbol.asyncIterator]();
  const mine = makeTask(service.id, { nodeId });
  commit(store, (tx) => {
    tx.createTask(makeTask(service.id));
    tx.createTask(mine);
    tx.putValue("k", Buffer.from("v"));
  });
  const [event] = await take(it, 1);
  assert.ok(event!.kind === "create" && event!.table === "tasks" && event!.object.id === mine.id);
  tasksOfNode.close();
});

test("restore emits a single reset event", async () => {
  const store = new ObjectStore();
  commit(store, (tx) => tx.putValue("a", Buffer.from("1")));
  const snap = store.snapshot();
  const watch = store.watch({ tables: ["nodes"] }); // reset is delivered regardless of filter
  const it = watch.events[Symbol.asyncIterator]();
  store.restoreSnapshot(snap);
  const [event] = await take(it, 1);
  assert.deepEqual(event, { kind: "reset", index: 1 });
  watch.close();
});

test("a slow watcher is closed with QUEUE_FULL at its bound; others keep going", async () => {
  const store = new ObjectStore();
  const bound = 100;
  const slow = store.watch({}, { maxQueuedEvents: bound });
  const fast = store.watch({}, { maxQueuedEvents: bound });
  const fastIt = fast.events[Symbol.asyncIterator]();
  let fastSeen = 0;
  for (let i = 0; i < bound; i++) {
    commit(store, (tx) => tx.putValue(`k${i}`, Buffer.from("v")));
    await fastIt.next();
    fastSeen++;
  }
  // Exactly at the bound the slow watcher is still open.
  assert.equal(store.watcherCount, 2);
  commit(store, (tx) => tx.putValue("one-more", Buffer.from("v")));
  assert.equal(store.watcherCount, 1, "the watcher past its bound was dropped");
  await assert.rejects(slow.events[Symbol.asyncIterator]().next(), (e: unknown) => isShoalError(e, "QUEUE_FULL"));
  assert.equal((await fastIt.next()).value.index, bound + 1);
  assert.equal(fastSeen, bound);
  fast.close();
});

test("default watcher bound is 10,000 events", async () => {
  const store = new ObjectStore();
  const watch = store.watch();
  commit(store, (tx) => { for (let i = 0; i < 10_000; i++) tx.putValue(`k${i}`, Buffer.from("v")); });
  assert.equal(store.watcherCount, 1);
  commit(store, (tx) => tx.putValue("over", Buffer.from("v")));
  assert.equal(store.watcherCount, 0);
  await assert.rejects(watch.events[Symbol.asyncIterator]().next(), (e: unknown) => isShoalError(e, "QUEUE_FULL"));
});

test("callback watchers get events synchronously during apply and are closed if they throw", () => {
  const store = new ObjectStore();
  const seen: number[] = [];
  const ok = store.watch({ tables: ["kv"] }, { onEvent: (e) => seen.push(e.index) });
  let calls = 0;
  store.watch({}, { onEvent: () => { calls++; throw new Error("consumer bug"); } });
  commit(store, (tx) => tx.putValue("a", Buffer.from("1")));
  assert.deepEqual(seen, [1], "delivered before apply returned");
  assert.equal(store.watcherCount, 1, "the throwing watcher was closed");
  commit(store, (tx) => tx.putValue("b", Buffer.from("2")));
  assert.deepEqual(seen, [1, 2]);
  assert.equal(calls, 1);
  ok.close();
  commit(store, (tx) => tx.putValue("c", Buffer.from("3")));
  assert.deepEqual(seen, [1, 2]);
});

test("a filter that throws closes its watcher and does not fail the apply", async () => {
  const store = new ObjectStore();
  const watch = store.watch({ match: () => { throw new Error("filter bug"); } });
  const result = commit(store, (tx) => tx.putValue("a", Buffer.from("1")));
  assert.equal(result.ok, true);
  assert.equal(store.watcherCount, 0);
  await assert.rejects(watch.events[Symbol.asyncIterator]().next(), (e: unknown) => isShoalError(e, "INTERNAL"));
});
