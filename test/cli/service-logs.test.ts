// `shoal service logs` (the real bin/shoal.js against a fake daemon): the request carries the
// service's ID, --follow and --tail; each line is printed as `name.slot@node | text`, stdout lines to
// stdout and stderr lines to stderr, --timestamps first; control characters in a task's output are
// escaped (tab kept), so a task cannot drive the operator's terminal; a bad --tail is refused.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ShoalError } from "../../src/base/errors.js";
import { LogStream } from "../../src/proto/shoal/v1/objects.js";
import { PrintedLines } from "../../src/cli/commands/service-logs.js";
import { FakeDaemon, runShoal } from "./fake-daemon.js";

let fake: FakeDaemon;
let sock: string[];
before(async () => {
  fake = await FakeDaemon.start();
  sock = ["--socket", fake.socketPath];
});
after(async () => {
  await fake.stop();
});

const SVC = "svc0000000000000000000001";

test("service logs prints prefixed lines, stderr on stderr, control characters escaped", async () => {
  const at = new Date("2026-12-02T00:00:01.500Z");
  const line = (stream: LogStream, data: string, slot: number) => ({ taskId: "t", timestamp: at, stream, data: Buffer.from(data), slot, node: "host-a" });
  fake.reset({
    listServices: () => ({ services: [{ id: SVC, spec: { name: "web", replicas: 2 } }] }),
    serviceLogs: () => ({
      batches: [{ lines: [line(LogStream.LOG_STREAM_STDOUT, "hello", 1), line(LogStream.LOG_STREAM_STDERR, "oops", 2)] }, { lines: [line(LogStream.LOG_STREAM_STDOUT, "\x1b[31mred\x1b[0m\tx", 1)] }],
    }),
  });
  const r = await runShoal([...sock, "service", "logs", "web", "--tail", "5"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "web.1@host-a | hello\nweb.1@host-a | \\x1b[31mred\\x1b[0m\tx\n");
  assert.equal(r.stderr, "web.2@host-a | oops\n");
  assert.deepEqual(fake.callsTo("serviceLogs"), [{ serviceId: SVC, follow: false, tail: 5 }]);

  const ts = await runShoal([...sock, "service", "logs", "web", "--timestamps", "--follow"]);
  assert.equal(ts.code, 0, ts.stderr);
  assert.ok(ts.stdout.startsWith("2026-12-02T00:00:01.500Z web.1@host-a | hello\n"), ts.stdout);
  assert.deepEqual(fake.callsTo("serviceLogs")[1], { serviceId: SVC, follow: true, tail: -1 });

  const bad = await runShoal([...sock, "service", "logs", "web", "--tail", "-3"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--tail takes a number of lines or "all"/);
});

test("PrintedLines: after a resume the replayed lines are dropped, new ones kept; lines older than the first subscription too", () => {
  const at = (ms: number, taskId = "t1") => ({ taskId, timestamp: new Date(ms), stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from(`${taskId}@${ms}`), slot: 1, node: "n" });
  const printed = new PrintedLines(1000);
  // First subscription (--tail 1 of t1): t1 printed lines at 1000, 2000, 2000; t2 printed nothing.
  assert.deepEqual([at(1000), at(2000), at(2000)].map((l) => printed.admit(l)), [true, true, true]);
  printed.resume();
  // The new leader replays every kept line: t1's 500 (left out by --tail), 1000, 2000 x2, then a third
  // line at 2000 and one at 3000 are new; t2's line from before the first subscription is dropped,
  // its line from after is kept.
  const replay = [at(500), at(1000), at(2000), at(2000), at(2000), at(3000), at(900, "t2"), at(1500, "t2")];
  assert.deepEqual(replay.map((l) => printed.admit(l)), [false, false, false, false, true, true, false, true]);
  // A second resume drops all of that.
  printed.resume();
  assert.deepEqual([...replay, at(4000)].map((l) => printed.admit(l)), [false, false, false, false, false, false, false, false, true]);
});

test("service logs --follow subscribes again after a leader change and prints each line once", async () => {
  const line = (data: string, ms: number) => ({ taskId: "t", timestamp: new Date(Date.now() + ms), stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from(data), slot: 1, node: "host-a" });
  const first = [line("one", 1000), line("two", 2000)];
  fake.reset({
    listServices: () => ({ services: [{ id: SVC, spec: { name: "web", replicas: 1 } }] }),
    serviceLogs: (_req, index: number) =>
      index === 0
        ? { batches: [{ lines: first }], error: new ShoalError("NOT_LEADER", "this manager is not the leader") }
        : index === 1
          ? new ShoalError("UNAVAILABLE", "no leader yet")
          : { batches: [{ lines: [...first, line("three", 3000)] }] },
  });
  const r = await runShoal([...sock, "service", "logs", "web", "--follow", "--tail", "2"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "web.1@host-a | one\nweb.1@host-a | two\nweb.1@host-a | three\n");
  assert.deepEqual(fake.callsTo("serviceLogs"), [
    { serviceId: SVC, follow: true, tail: 2 },
    { serviceId: SVC, follow: true, tail: -1 },
    { serviceId: SVC, follow: true, tail: -1 },
  ]);

  // Without --follow a leader change is an error, as before; so is any other error with --follow.
  fake.reset({
    listServices: () => ({ services: [{ id: SVC, spec: { name: "web", replicas: 1 } }] }),
    serviceLogs: (_req, index: number) => (index === 0 ? new ShoalError("NOT_LEADER", "this manager is not the leader") : new ShoalError("PERMISSION_DENIED", "no")),
  });
  const once = await runShoal([...sock, "service", "logs", "web"]);
  assert.notEqual(once.code, 0);
  const denied = await runShoal([...sock, "service", "logs", "web", "--follow"]);
  assert.notEqual(denied.code, 0);
  assert.match(denied.stderr, /no/);
  assert.equal(fake.callsTo("serviceLogs").length, 2);
});
