// The dispatcher's DOWN marking runs on the injected clock (no global timer): with a ManualClock, a
// READY node that stops heartbeating is proposed DOWN once the virtual TTL passes, not before, and
// the timer stops when leadership ends.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { Dispatcher, HEARTBEAT_TTL_PERIODS } from "../../src/manager/dispatcher/dispatcher.js";
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
