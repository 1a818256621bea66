// The jobs the store's tasks call for: one per (service, spec version, digest), targets the nodes
// of its tasks that are assigned and not yet starting; job IDs are the same for the same inputs
// (a new leader rebuilds the old one's jobs); process tasks, unassigned, started, ended or
// unpinned tasks call for none.
import { test } from "node:test";
import assert from "node:assert/strict";
import { prefetchJobId, wantedJobs } from "../../src/manager/prefetch/wanted-jobs.js";
import { Task, TaskState } from "../../src/proto/shoal/v1/objects.js";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
let n = 0;
function task(extra: { serviceId?: string; specVersion?: bigint; digest?: string; nodeId?: string; zone?: string; state?: TaskState; desired?: TaskState; executor?: string }): Task {
  return Task.fromPartial({
    id: `t${++n}`,
    serviceId: extra.serviceId ?? "svc",
    specVersion: extra.specVersion ?? 1n,
    nodeId: extra.nodeId ?? "n1",
    zone: extra.zone ?? "a",
    executor: extra.executor ?? "runc",
    desiredState: extra.desired ?? TaskState.TASK_STATE_RUNNING,
    status: { state: extra.state ?? TaskState.TASK_STATE_ASSIGNED },
    spec: { image: "127.0.0.1:5000/team/app:1", imageDigest: extra.digest ?? D1 },
  });
}

test("one job per service version and digest, targeting the nodes of its tasks that have not started", () => {
  const jobs = wantedJobs([
    task({ nodeId: "n1" }),
    task({ nodeId: "n2", zone: "b", state: TaskState.TASK_STATE_PREPARING }),
    task({ nodeId: "n1" }), // a second replica on n1: one target
    task({ nodeId: "n3", state: TaskState.TASK_STATE_RUNNING }), // started: has its image
    task({ nodeId: "n4", desired: TaskState.TASK_STATE_SHUTDOWN }), // being stopped
    task({ nodeId: "" , state: TaskState.TASK_STATE_PENDING }), // not placed yet
    task({ nodeId: "n5", executor: "process" }), // no image
    task({ nodeId: "n6", digest: "" }), // not pinned yet
    task({ nodeId: "n7", specVersion: 2n, digest: D2 }), // the next version: its own job
  ]);
  assert.equal(jobs.length, 2);
  const [v1, v2] = [jobs.find((j) => j.specVersion === 1n)!, jobs.find((j) => j.specVersion === 2n)!];
  assert.deepEqual([...v1.targets].sort(), [["n1", "a"], ["n2", "b"]]);
  assert.equal(v1.manifestDigest, D1);
  assert.equal(v1.image, "127.0.0.1:5000/team/app:1");
  assert.deepEqual([...v2.targets], [["n7", "a"]]);
  assert.equal(v1.jobId, prefetchJobId("svc", 1n, D1));
  assert.notEqual(v1.jobId, v2.jobId);
  assert.deepEqual(wantedJobs([task({ nodeId: "n9" })]).map((j) => j.jobId), [v1.jobId], "the same inputs give the same job ID");
  assert.deepEqual(wantedJobs([task({ state: TaskState.TASK_STATE_STARTING })]), []);
});
