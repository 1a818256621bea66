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

test("the task log gives lines with their arrival time, the last N with a tail, and followers every later chunk", () => {
  let now = 1000;
  const log = new TaskLog(64, () => now);
  log.append("stdout", Buffer.from("one\ntw"));
  now = 2000;
  log.append("stdout", Buffer.from("o\nthree\n"));
  log.append("stderr", Buffer.from("err\n"));
  assert.deepEqual(log.lines().map((l) => [l.stream, l.data.toString(), l.atMs]), [
    ["stdout", "one", 1000],
    ["stdout", "two", 1000],
    ["stdout", "three", 2000],
    ["stderr", "err", 2000],
  ]);
  assert.deepEqual(log.lines(2).map((l) => l.data.toString()), ["three", "err"]);
  assert.deepEqual(log.lines(0), []);
  const seen: string[] = [];
  const stop = log.follow((c) => seen.push(c.data.toString()));
  log.append("stdout", Buffer.from("later\n"));
  stop();
  log.append("stdout", Buffer.from("unseen\n"));
  assert.deepEqual(seen, ["later\n"]);
  assert.equal(log.followerCount, 0);
  // The bound holds for lines too: a flood keeps only the newest 64 bytes.
  for (let i = 0; i < 1000; i++) log.append("stdout", Buffer.from(`line-${i}\n`));
  assert.equal(log.sizeBytes, 64);
  const kept = log.lines();
  assert.equal(kept.at(-1)!.data.toString(), "line-999");
  assert.ok(kept.reduce((n, l) => n + l.data.length + 1, 0) <= 64 + 1);
});

test("a line longer than the line bound is cut into pieces", async () => {
  const { MAX_LOG_LINE_BYTES } = await import("../../src/state/limits.js");
  const log = new TaskLog(4 * MAX_LOG_LINE_BYTES);
  log.append("stdout", Buffer.alloc(2 * MAX_LOG_LINE_BYTES + 5, 0x61));
  assert.deepEqual(log.lines().map((l) => l.data.length), [MAX_LOG_LINE_BYTES, MAX_LOG_LINE_BYTES, 5]);
});
