// The agent's view of its assignments (DESIGN.md §3 rule 8): a COMPLETE set replaces everything, an
// INCREMENTAL applies only on top of the set it names; a gap or an incremental before the complete
// set is refused (the caller reopens the stream) and leaves the set as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AssignmentSet } from "../../src/agent/assignment-set.js";
import { AssignmentAction, AssignmentsMessage_Type, PrefetchOrder, type AssignmentChange, type AssignmentsMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { Secret, Task } from "../../src/proto/shoal/v1/objects.js";

const task = (id: string): AssignmentChange => ({ assignment: { task: Task.fromPartial({ id }) }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE });
const secret = (id: string): AssignmentChange => ({ assignment: { secret: Secret.fromPartial({ id, spec: { name: id, data: Buffer.from("x") } }) }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE });
const removeTask = (id: string): AssignmentChange => ({ assignment: { task: Task.fromPartial({ id }) }, action: AssignmentAction.ASSIGNMENT_ACTION_REMOVE });
const removeSecret = (id: string): AssignmentChange => ({ assignment: { secret: Secret.fromPartial({ id }) }, action: AssignmentAction.ASSIGNMENT_ACTION_REMOVE });
const complete = (resultsIn: string, changes: AssignmentChange[]): AssignmentsMessage => ({ type: AssignmentsMessage_Type.TYPE_COMPLETE, appliesTo: "", resultsIn, changes });
const incremental = (appliesTo: string, resultsIn: string, changes: AssignmentChange[]): AssignmentsMessage => ({ type: AssignmentsMessage_Type.TYPE_INCREMENTAL, appliesTo, resultsIn, changes });

test("a complete set replaces what the agent held; incrementals apply in sequence", () => {
  const set = new AssignmentSet();
  set.streamOpened();
  assert.deepEqual(set.apply(complete("5", [task("t1"), task("t2"), secret("s1")])), { applied: true });
  assert.deepEqual([...set.tasks.keys()].sort(), ["t1", "t2"]);
  assert.ok(set.secrets.has("s1"));
  assert.deepEqual(set.apply(incremental("5", "6", [removeTask("t1"), task("t3")])), { applied: true });
  assert.deepEqual(set.apply(incremental("6", "7", [removeSecret("s1")])), { applied: true });
  assert.deepEqual([...set.tasks.keys()].sort(), ["t2", "t3"]);
  assert.equal(set.secrets.size, 0);
  assert.equal(set.lastResultsIn, "7");
  // A later complete set drops whatever it does not name.
  set.streamOpened();
  assert.deepEqual(set.apply(complete("9", [task("t9")])), { applied: true });
  assert.deepEqual([...set.tasks.keys()], ["t9"]);
});

test("a gap, or an incremental before the complete set, is refused and changes nothing", () => {
  const set = new AssignmentSet();
  set.streamOpened();
  const early = set.apply(incremental("", "1", [task("t1")]));
  assert.equal(early.applied, false);
  assert.equal(set.tasks.size, 0);
  set.apply(complete("3", [task("t1")]));
  const gap = set.apply(incremental("4", "5", [removeTask("t1"), task("t2")]));
  assert.equal(gap.applied, false);
  assert.match((gap as { reason: string }).reason, /applies to 4.*was 3/);
  assert.deepEqual([...set.tasks.keys()], ["t1"], "nothing of the out-of-sequence change applied");
  // A reopened stream must start with a complete set again.
  set.streamOpened();
  assert.equal(set.apply(incremental("3", "4", [task("t2")])).applied, false);
  assert.equal(set.apply(complete("10", [task("t1"), task("t2")])).applied, true);
  assert.equal(set.apply(incremental("10", "11", [])).applied, true);
});

test("prefetch orders are kept by job, replaced by a complete set and dropped by REMOVE", () => {
  const order = (jobId: string, seed = false): AssignmentChange => ({ assignment: { prefetch: PrefetchOrder.fromPartial({ jobId, seed, image: "r/app" }) }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE });
  const set = new AssignmentSet();
  set.streamOpened();
  set.apply(complete("1", [order("j1"), order("j2"), task("t1")]));
  assert.deepEqual([...set.prefetch.keys()].sort(), ["j1", "j2"]);
  assert.equal(set.tasks.size, 1, "an order is not a task");
  set.apply(incremental("1", "2", [order("j1", true), { assignment: { prefetch: PrefetchOrder.fromPartial({ jobId: "j2" }) }, action: AssignmentAction.ASSIGNMENT_ACTION_REMOVE }]));
  assert.deepEqual([...set.prefetch.keys()], ["j1"]);
  assert.equal(set.prefetch.get("j1")!.seed, true, "an UPDATE replaces the job's order");
  set.streamOpened();
  set.apply(complete("7", [task("t1")]));
  assert.equal(set.prefetch.size, 0, "a complete set without the job drops it");
});
