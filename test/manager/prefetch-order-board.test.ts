// The leader's board of prefetch orders: a publish replaces every order of its job (nodes left out
// lose theirs), each publish gives new versions (the dispatcher's fingerprint), withdraw and clear
// tell the listeners which nodes changed, and malformed publishes are refused without a change.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { PrefetchOrderBoard } from "../../src/manager/prefetch/order-board.js";
import { PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";

const order = (nodeId: string, jobId: string, zone = "a") => ({ nodeId, zone, order: PrefetchOrder.fromPartial({ jobId }) });

test("a publish replaces the job's orders and reports the nodes it touched", () => {
  const board = new PrefetchOrderBoard();
  const changes: string[][] = [];
  board.onChange((ids) => changes.push([...ids].sort()));
  board.publish("j1", [order("n1", "j1"), order("n2", "j1")]);
  board.publish("j2", [order("n2", "j2", "b")]);
  assert.deepEqual(board.ordersFor("n2").map((e) => [e.order.jobId, e.zone]), [["j1", "a"], ["j2", "b"]]);
  const v1 = board.ordersFor("n1")[0]!.version;

  board.publish("j1", [order("n1", "j1"), order("n3", "j1")]);
  assert.notEqual(board.ordersFor("n1")[0]!.version, v1, "republished: a new version");
  assert.deepEqual(board.ordersFor("n2").map((e) => e.order.jobId), ["j2"], "n2 left job j1's plan");
  assert.deepEqual(changes.at(-1), ["n1", "n2", "n3"]);

  board.withdraw("j1");
  assert.deepEqual(changes.at(-1), ["n1", "n3"]);
  assert.equal(board.ordersFor("n1").length, 0);
  assert.deepEqual(board.jobs(), ["j2"]);

  board.clear();
  assert.deepEqual(changes.at(-1), ["n2"]);
  assert.deepEqual(board.jobs(), []);
  assert.equal(board.ordersFor("n2").length, 0);
});

test("an order of another job, or two orders for one node, are refused and change nothing", () => {
  const board = new PrefetchOrderBoard();
  board.publish("j1", [order("n1", "j1")]);
  assert.throws(() => board.publish("j1", [order("n1", "j9")]), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
  assert.throws(() => board.publish("j1", [order("n2", "j1"), order("n2", "j1")]), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
  assert.deepEqual(board.ordersFor("n1").map((e) => e.order.jobId), ["j1"]);
  assert.equal(board.ordersFor("n2").length, 0);
});
