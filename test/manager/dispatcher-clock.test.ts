// The dispatcher's DOWN marking runs on the injected clock (no global timer): with a ManualClock, a
// READY node that stops heartbeating is proposed DOWN once the virtual TTL passes, not before, and
// the timer stops when leadership ends.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { Dispatcher, HEARTBEAT_TTL_PERIODS } from "../../src/manager/dispatcher/dispatcher.js";
import { DEFAULT_HEARTBEAT_PERIOD_MS, HeartbeatMonitor } from "../../src/manager/dispatcher/heartbeats.js";
import type { ManagerContext } from "../../src/manager/context.js";
import { NodeState, type Node } from "../../src/proto/shoal/v1/objects.js";

function readyNode(id: string): Node {
  return {
    id,
    meta: undefined,
    managerStatus: undefined,
    spec: undefined,
    description: undefined,
    status: { state: NodeState.NODE_STATE_READY, message: "", addr: "10.0.0.1:1", lastHeartbeat: undefined },
    certificate: undefined,
    role: 0,
  } as Node;
}

test("the dispatcher marks a silent node DOWN on the injected clock's schedule", () => {
  const clock = new ManualClock(1_000_000);
  const node = readyNode("n".repeat(25));
  const proposed: Node[] = [];
  const ctx = {
    clock,
    random: new SeededRandom(1),
    logger: pino({ level: "silent" }),
    raft: { isLeader: true, term: 7, status: () => ({ members: [] }) },
    store: { listNodes: () => [node], getNode: () => node },
    onApplied: () => () => undefined,
    leaderAddr: () => undefined,
    propose: async (build: (tx: { updateNode(n: Node): void }) => void) => {
      build({ updateNode: (n) => proposed.push(n) });
      return { index: 1, changes: [] };
    },
  } as unknown as ManagerContext;
  const periodMs = 1000;
  const dispatcher = new Dispatcher(ctx, { heartbeatPeriodMs: periodMs });
  dispatcher.leadershipChanged(true, 7);
  assert.equal(clock.pendingTimers, 1, "the DOWN check is a timer of the injected clock");
  clock.advance(periodMs * HEARTBEAT_TTL_PERIODS);
  assert.equal(proposed.length, 0, "not DOWN within the TTL");
  clock.advance(periodMs);
  assert.equal(proposed.length, 1, "DOWN once the TTL has passed");
  assert.equal(proposed[0]!.status?.state, NodeState.NODE_STATE_DOWN);
  assert.equal(proposed[0]!.status?.lastHeartbeat?.getTime(), clock.nowMs(), "the status time is the injected clock's");
  dispatcher.leadershipChanged(false, 7);
  assert.equal(clock.pendingTimers, 0, "losing leadership stops the timer");
  dispatcher.close();
});

test("heartbeat periods are 5 s ± 10 % by default, and a node is overdue after 3 of the periods it was told", () => {
  const clock = new ManualClock(0);
  const expired: string[][] = [];
  let ready = ["n1", "n2"];
  const monitor = new HeartbeatMonitor({ periodMs: DEFAULT_HEARTBEAT_PERIOD_MS, clock, random: new SeededRandom(7), readyNodes: () => ready, onExpired: (ids) => expired.push(ids) });
  assert.equal(DEFAULT_HEARTBEAT_PERIOD_MS, 5000);
  const told = Array.from({ length: 200 }, () => monitor.choosePeriodMs());
  assert.ok(told.every((p) => p >= 4500 && p <= 5500), "within ± 10 %");
  assert.ok(new Set(told).size > 50, "jittered, not one fixed period");
  assert.equal(monitor.maxPeriodMs, 5500);

  monitor.start();
  monitor.beat("n1", 4600);
  // n2 never beats: it gets the longest TTL (3 × 5.5 s) from the start.
  clock.advance(3 * 4600);
  assert.equal(monitor.expired("n1", clock.nowMs()), false, "not overdue at exactly 3 told periods");
  assert.equal(monitor.expired("n1", clock.nowMs() + 1), true, "overdue just after");
  clock.advance(5000); // the check at 15 s: n1 (13.8 s) is overdue, n2 (16.5 s) not yet
  assert.deepEqual(expired, [["n1"]]);
  clock.advance(5000); // the check at 20 s: both
  assert.deepEqual(expired.at(-1), ["n1", "n2"]);
  ready = [];
  const before = expired.length;
  clock.advance(5000);
  assert.equal(expired.length, before, "only READY nodes are reported");
  monitor.stop();
  assert.equal(clock.pendingTimers, 0);
});
