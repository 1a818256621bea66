// `shoal service logs` (the real bin/shoal.js against a fake daemon): the request carries the
// service's ID, --follow and --tail; each line is printed as `name.slot@node | text`, stdout lines to
// stdout and stderr lines to stderr, --timestamps first; control characters in a task's output are
// escaped (tab kept), so a task cannot drive the operator's terminal; a bad --tail is refused.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { LogStream } from "../../src/proto/shoal/v1/objects.js";
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
