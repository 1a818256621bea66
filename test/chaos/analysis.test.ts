// The chaos run's loss check on hand-made histories (so it can fail), and its history through the
// linearizability checker: a stale read after an acknowledged write is caught.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkLinearizable } from "../../cluster-sim/linearizability.js";
import { findLostWrites, type FinalValue } from "../../scripts/chaos/analysis.js";
import type { RecordedOp } from "../../scripts/chaos/workload.js";

const put = (id: number, key: string, value: string, index: number, invokeMs: number, returnMs: number): RecordedOp => ({
  id, clientId: id, via: "m1", input: { kind: "put", key, value }, output: { kind: "put" }, index: String(index), invokeMs, returnMs,
});
const get = (id: number, key: string, value: string | null, invokeMs: number, returnMs: number): RecordedOp => ({
  id, clientId: id, via: "m1", input: { kind: "get", key }, output: { kind: "get", value }, invokeMs, returnMs,
});

test("an acknowledged write above the key's final index is lost; one below it was overwritten", () => {
  const history = [put(1, "k", "a", 5, 0, 10), put(2, "k", "b", 9, 20, 30), put(3, "j", "x", 7, 0, 10)];
  const fine = new Map<string, FinalValue>([["k", { value: "b", index: 9n }], ["j", { value: "x", index: 7n }]]);
  assert.deepEqual(findLostWrites(history, fine).problems, []);
  const rolledBack = new Map<string, FinalValue>([["k", { value: "a", index: 5n }], ["j", { value: "x", index: 7n }]]);
  const report = findLostWrites(history, rolledBack);
  assert.deepEqual(report.lost.map((op) => op.id), [2]);
  assert.match(report.problems[0]!, /1 acknowledged writes lost/);
});

test("a final value that differs from what the acknowledged write at its index wrote is reported", () => {
  const history = [put(1, "k", "a", 5, 0, 10)];
  const report = findLostWrites(history, new Map([["k", { value: "zzz", index: 5n }]]));
  assert.equal(report.problems.length, 1);
  assert.match(report.problems[0]!, /reads zzz at index 5/);
});

test("a stale read after an acknowledged write makes the history non-linearizable; an unknown write does not", () => {
  const stale = [put(1, "k", "a", 5, 0, 10), put(2, "k", "b", 9, 20, 30), get(3, "k", "a", 40, 50)];
  assert.equal(checkLinearizable(stale).ok, false);
  const unknown: RecordedOp = { id: 4, clientId: 4, via: "m2", input: { kind: "put", key: "k", value: "c" }, invokeMs: 35, returnMs: Infinity, error: "TIMEOUT" };
  assert.equal(checkLinearizable([...stale.slice(0, 2), unknown, get(5, "k", "c", 60, 70)]).ok, true);
});
