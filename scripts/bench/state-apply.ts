// Object store throughput: applies/s of a one-key KV put and of a 10-task update proposal, and the
// size and time of a snapshot (and restore) holding 10,000 tasks. Prints one JSON object.
import { performance } from "node:perf_hooks";
import { newId } from "../../src/base/ids.js";
import { Service, Task, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { StoreProposal } from "../../src/proto/shoal/v1/store.js";
import { ObjectStore } from "../../src/state/index.js";

const NOW = new Date("2026-01-01T00:00:00Z");

function makeTask(serviceId: string, slot: number): Task {
  return Task.fromPartial({
    id: newId(),
    serviceId,
    slot,
    nodeId: newId(),
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_RUNNING, message: "started", timestamp: NOW },
    spec: { image: "registry.example/app:1.2.3", command: ["/app", "--port", "8080"], env: ["MODE=prod"] },
    zone: "default",
    serviceName: "web",
  });
}

function setup(tasks: number): { store: ObjectStore; serviceId: string; taskIds: string[] } {
  const store = new ObjectStore();
  const serviceId = newId();
  store.apply(store.prepare((tx) => tx.createService(Service.fromPartial({ id: serviceId, spec: { name: "web", replicas: tasks } })), { now: NOW }), { index: 1 });
  const taskIds: string[] = [];
  for (let done = 0; done < tasks; done += 1000) {
    const batch = Array.from({ length: Math.min(1000, tasks - done) }, (_, i) => makeTask(serviceId, done + i));
    taskIds.push(...batch.map((t) => t.id));
    const result = store.apply(store.prepare((tx) => { for (const t of batch) tx.createTask(t); }, { now: NOW }), { index: store.lastAppliedIndex + 1 });
    if (!result.ok) throw result.error;
  }
  return { store, serviceId, taskIds };
}

function kvPutAppliesPerSec(count: number): { appliesPerSec: number; proposalBytes: number; prepareAndApplyPerSec: number } {
  const store = new ObjectStore();
  const proposals = Array.from({ length: count }, (_, i) => store.prepare((tx) => tx.putValue(`bench/${i % 100}`, Buffer.from("0123456789abcdef")), { now: NOW }));
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const r = store.apply(proposals[i]!, { index: i + 1 });
    if (!r.ok) throw r.error;
  }
  const applyMs = performance.now() - start;
  const start2 = performance.now();
  for (let i = 0; i < count; i++) {
    const bytes = store.prepare((tx) => tx.putValue(`bench/${i % 100}`, Buffer.from("0123456789abcdef")), { now: NOW });
    store.apply(bytes, { index: store.lastAppliedIndex + 1 });
  }
  const bothMs = performance.now() - start2;
  return { appliesPerSec: Math.round((count / applyMs) * 1000), proposalBytes: proposals[0]!.length, prepareAndApplyPerSec: Math.round((count / bothMs) * 1000) };
}

function taskUpdateAppliesPerSec(count: number): { appliesPerSec: number; proposalBytes: number; prepareAndApplyPerSec: number } {
  const { store, taskIds } = setup(10);
  const ids = taskIds.slice(0, 10);
  // Template proposal updating 10 tasks; every apply sets their versions to its index, so proposal
  // k carries version (index of proposal k-1).
  const template = StoreProposal.decode(store.prepare((tx) => {
    for (const id of ids) {
      const t = tx.getTask(id)!;
      t.status!.message = "heartbeat";
      tx.updateTask(t);
    }
  }, { now: NOW }));
  const base = store.lastAppliedIndex;
  const proposals = Array.from({ length: count }, (_, k) => {
    for (const action of template.actions) action.task!.meta!.version = BigInt(base + k);
    template.proposalId = newId();
    return StoreProposal.encode(template).finish();
  });
  const start = performance.now();
  for (let k = 0; k < count; k++) {
    const r = store.apply(proposals[k]!, { index: base + k + 1 });
    if (!r.ok) throw r.error;
  }
  const applyMs = performance.now() - start;
  const start2 = performance.now();
  for (let k = 0; k < count; k++) {
    const bytes = store.prepare((tx) => {
      for (const id of ids) {
        const t = tx.getTask(id)!;
        t.status!.exitCode = k;
        tx.updateTask(t);
      }
    }, { now: NOW });
    const r = store.apply(bytes, { index: store.lastAppliedIndex + 1 });
    if (!r.ok) throw r.error;
  }
  const bothMs = performance.now() - start2;
  return { appliesPerSec: Math.round((count / applyMs) * 1000), proposalBytes: proposals[0]!.length, prepareAndApplyPerSec: Math.round((count / bothMs) * 1000) };
}

function snapshot10k(): { tasks: number; snapshotBytes: number; snapshotMs: number; restoreMs: number } {
  const { store } = setup(10_000);
  store.snapshot(); // warm up
  const start = performance.now();
  const bytes = store.snapshot();
  const snapshotMs = performance.now() - start;
  const start2 = performance.now();
  const restored = ObjectStore.restore(bytes);
  const restoreMs = performance.now() - start2;
  if (restored.counts().tasks !== 10_000) throw new Error("restore lost tasks");
  return { tasks: 10_000, snapshotBytes: bytes.length, snapshotMs: Math.round(snapshotMs * 10) / 10, restoreMs: Math.round(restoreMs * 10) / 10 };
}

kvPutAppliesPerSec(2_000); // warm up the JIT
taskUpdateAppliesPerSec(500);
const result = {
  bench: "state-apply",
  node: process.version,
  kvPut: kvPutAppliesPerSec(50_000),
  taskUpdate10: taskUpdateAppliesPerSec(10_000),
  snapshot: snapshot10k(),
};
process.stdout.write(JSON.stringify(result) + "\n");
