// The cost of `shoal events` inside apply (issue 12): every manager derives events synchronously
// in its store watch, so this measures apply of task state updates (the commonest change) on an
// ObjectStore without and with an EventFeed attached, alternating rounds, and prints JSON: µs per
// applied proposal for each, and the overhead. No target beyond reporting.
// Run: node --import tsx scripts/bench/events-apply.ts [--tasks 1000] [--rounds 5]
import { performance } from "node:perf_hooks";
import { newId } from "../../src/base/ids.js";
import { systemClock } from "../../src/base/clock.js";
import { Service, Task, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore } from "../../src/state/index.js";
import { EventHistory } from "../../src/manager/events/event-history.js";
import { EventFeed } from "../../src/manager/events/event-feed.js";
import { argNumber } from "./lib/args.js";

const tasks = argNumber("--tasks", 1000);
const rounds = argNumber("--rounds", 5);
const T0 = new Date("2026-01-01T00:00:00Z");

function run(withFeed: boolean): number {
  const store = new ObjectStore();
  const apply = (build: Parameters<ObjectStore["prepare"]>[0]): void => {
    const result = store.apply(store.prepare(build, { now: T0 }), { index: store.lastAppliedIndex + 1 });
    if (!result.ok) throw result.error;
  };
  const service = Service.fromPartial({ id: newId(), spec: { name: "web", replicas: tasks, container: { command: ["sleep", "1"] } } });
  apply((tx) => tx.createService(service));
  const ids: string[] = [];
  for (let i = 0; i < tasks; i++) {
    const task = Task.fromPartial({ id: newId(), serviceId: service.id, serviceName: "web", slot: i + 1, desiredState: TaskState.TASK_STATE_RUNNING, status: { state: TaskState.TASK_STATE_PENDING } });
    ids.push(task.id);
    apply((tx) => tx.createTask(task));
  }
  const history = new EventHistory();
  const feed = withFeed ? new EventFeed(store, history, systemClock, { warn: () => undefined }) : undefined;
  feed?.goLive(store.lastAppliedIndex);
  const states = [TaskState.TASK_STATE_ASSIGNED, TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_PREPARING, TaskState.TASK_STATE_STARTING, TaskState.TASK_STATE_RUNNING];
  const started = performance.now();
  let applies = 0;
  for (const state of states) {
    for (const id of ids) {
      const task = store.getTask(id)!;
      apply((tx) => tx.updateTask({ ...task, status: { ...task.status!, state } }));
      applies++;
    }
  }
  const us = ((performance.now() - started) * 1000) / applies;
  if (withFeed && history.size !== Math.min(applies, 10_000)) throw new Error(`expected ${applies} events, got ${history.size}`);
  feed?.close();
  return us;
}

const without: number[] = [];
const withEvents: number[] = [];
run(false);
run(true); // warm-up
for (let r = 0; r < rounds; r++) {
  without.push(run(false));
  withEvents.push(run(true));
}
const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const a = median(without);
const b = median(withEvents);
console.log(JSON.stringify({ bench: "events-apply", tasks, rounds, applyUsWithoutEvents: +a.toFixed(1), applyUsWithEvents: +b.toFixed(1), overheadUsPerApply: +(b - a).toFixed(1), overheadRatio: +(b / a).toFixed(3) }));
