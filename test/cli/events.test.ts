// `shoal events` against a fake daemon on a real unix socket: flags become the request (since,
// types, no_follow for an --until in the past), lines look like `docker events` and --format json
// prints one object per line, bad flags exit 2 before any call, a worker's refusal exits 4, a stream
// that breaks exits 3 with a sentence, and Ctrl-C ends a following stream with exit 0.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { ShoalError } from "../../src/base/errors.js";
import { runCli } from "../../src/cli/program.js";
import { FakeDaemon, runShoal } from "./fake-daemon.js";

let fake: FakeDaemon;
before(async () => {
  fake = await FakeDaemon.start();
});
after(async () => {
  await fake.stop();
});

const SVC = "s".padEnd(25, "0");
const event = (over: object = {}) => ({
  type: "service",
  action: "scale",
  id: SVC,
  name: "web",
  attributes: { replicas: "3", old_replicas: "1", zone: "default" },
  time: new Date("2026-03-01T10:00:00.123Z"),
  index: 17n,
  ...over,
});

async function shoal(args: string[], io: { onInterrupt?: (h: () => void) => () => void } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(["--socket", fake.socketPath, ...args], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), stdin: Readable.from([""]), env: {}, ...io });
  return { code, stdout, stderr };
}

test("flags become the request; human lines as docker events prints them; json one object per line", async () => {
  fake.reset({ events: () => ({ batches: [{ events: [event(), event({ type: "node", action: "label", id: "n".padEnd(25, "0"), name: "w\u001b[2J1", attributes: { labels_added: "tier=web" }, index: 18n })] }] }) });
  const before = Date.now();
  const r = await shoal(["events", "--since", "1m", "--until", "0s", "--filter", "type=service", "--filter", "type=node"]);
  assert.equal(r.code, 0, r.stderr);
  const [call] = fake.callsTo("events") as { since: Date; types: string[]; noFollow: boolean }[];
  assert.deepEqual(call!.types, ["service", "node"]);
  assert.equal(call!.noFollow, true, "--until in the past: replay and end");
  assert.ok(Math.abs(call!.since.getTime() - (before - 60_000)) < 5_000, `since ${call!.since.toISOString()} is about a minute ago`);
  assert.equal(
    r.stdout,
    `2026-03-01T10:00:00.123Z service scale ${SVC} (name=web, old_replicas=1, replicas=3, zone=default)\n` +
      `2026-03-01T10:00:00.123Z node label ${"n".padEnd(25, "0")} (name=w\\x1b[2J1, labels_added=tier=web)\n`,
    "control characters a node reported are escaped",
  );

  const j = await shoal(["events", "--format", "json", "--since", "2026-03-01T09:00:00Z", "--until", "0s"]);
  assert.equal(j.code, 0, j.stderr);
  const lines = j.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.deepEqual(lines[0], { time: "2026-03-01T10:00:00.123Z", type: "service", action: "scale", id: SVC, name: "web", attributes: { replicas: "3", old_replicas: "1", zone: "default" }, index: 17 });
  assert.equal((fake.callsTo("events")[1] as { since: Date }).since.toISOString(), "2026-03-01T09:00:00.000Z");
});

test("bad --since, --until or --filter exit 2 with a sentence and call nothing", async () => {
  fake.reset({});
  for (const [args, message] of [
    [["--since", "yesterday"], /--since "yesterday" is not a duration/],
    [["--until", "2026-13-45T00:00:00Z"], /--until .* is not a valid time/],
    [["--filter", "type=pod"], /type="pod" is not an event type: use one of node, service, task, secret, ca/],
    [["--filter", "image=busybox"], /--filter "image=busybox" is not supported: use --filter type=/],
    [["--since", "1m", "--until", "2m"], /--until is before --since/],
    [["--format", "yaml"], /Allowed choices are table, json/],
  ] as const) {
    const r = await shoal(["events", ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.equal(fake.callsTo("events").length, 0);
});

test("a worker or locked node answers as for other manager commands; a broken stream exits 3 with a sentence", async () => {
  fake.reset({ events: () => new ShoalError("NOT_MANAGER", "this node is not a manager") });
  const w = await shoal(["events"]);
  assert.equal(w.code, 4);
  assert.match(w.stderr, /this node is not a manager: run this command on a manager node/);
  fake.reset({ events: () => new ShoalError("LOCKED", "locked") });
  assert.equal((await shoal(["events"])).code, 4);
  fake.reset({ events: () => ({ batches: [{ events: [event()] }], hangUp: true }) });
  const b = await shoal(["events"]);
  assert.equal(b.code, 3, b.stderr);
  assert.match(b.stdout, /service scale/, "what arrived before the break was printed");
  assert.match(b.stderr, /^Error: the event stream from the Shoal daemon at .* broke \(.*\): is `shoal daemon` still running\?\n$/);
  fake.reset({ events: () => ({ batches: [], error: new ShoalError("QUEUE_FULL", "this client fell more than 4096 events behind") }) });
  const slow = await shoal(["events"]);
  assert.equal(slow.code, 3);
  assert.match(slow.stderr, /fell more than 4096 events behind/);
});

test("Ctrl-C ends a following stream with exit 0", async () => {
  fake.reset({ events: () => ({ batches: [{ events: [event()] }], follow: true }) });
  let interrupt: (() => void) | undefined;
  const running = shoal(["events"], { onInterrupt: (h) => ((interrupt = h), () => (interrupt = undefined)) });
  const started = Date.now();
  while (fake.callsTo("events").length === 0 && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(interrupt !== undefined, "the command listens for Ctrl-C");
  interrupt!();
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /service scale/);
  assert.equal(interrupt, undefined, "and stops listening");
});

test("`shoal --help` lists events", async () => {
  const r = await runShoal(["--help"]);
  assert.match(r.stdout, /\n  events \[options\]/);
});
