// A task's output ring (for `service logs`): bounded, the newest bytes kept, what was dropped counted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TaskLog } from "../../src/agent/task-log.js";

test("the task log keeps the newest bytes up to its bound", () => {
  const log = new TaskLog(10);
  log.append("stdout", Buffer.from("abcdef"));
  log.append("stderr", Buffer.from("123"));
  assert.equal(log.read().toString(), "abcdef123");
  log.append("stdout", Buffer.from("XYZ"));
  assert.equal(log.sizeBytes, 10);
  assert.equal(log.read().toString(), "bcdef123XYZ".slice(1));
  assert.equal(log.dropped, 2);
  assert.equal(log.read("stderr").toString(), "123");
  log.append("stdout", Buffer.from("0123456789abcdef"));
  assert.equal(log.read().toString(), "6789abcdef");
  assert.equal(log.sizeBytes, 10);
});
