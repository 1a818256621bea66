// `shoal image prefetch status` against a fake daemon: piped (the real bin/shoal.js) it prints one
// table, or the jobs as JSON, with the service resolved to its ID before the call and names filled
// in from ListServices and ListNodes; an unknown service exits 5 with a sentence that says what to
// do. On a terminal (runCli in-process, with a clock that fires at once) it redraws until every job
// has ended and then exits 0, and Ctrl-C stops it cleanly with the last frame on screen.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { ManualClock, type Clock } from "../../src/base/clock.js";
import { ShoalError } from "../../src/base/errors.js";
import { runCli } from "../../src/cli/program.js";
import type { CliIo } from "../../src/cli/context.js";
import { NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { FakeDaemon, runShoal } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const WEB = id("web");
const API = id("api");
const NOW = Date.parse("2026-12-01T12:00:00.000Z");
const MIB = 1024 * 1024;
const DIGEST = `sha256:${"c0ffee".repeat(10)}abcd`;
const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

let fake: FakeDaemon;
let sock: string[];
before(async () => {
  fake = await FakeDaemon.start();
  sock = ["--socket", fake.socketPath];
});
after(async () => {
  await fake.stop();
});

const services = () => ({
  services: [
    { id: WEB, spec: { name: "web" } },
    { id: API, spec: { name: "api" } },
  ],
});
const nodes = () => ({
  nodes: [
    { id: id("n1"), role: NodeRole.NODE_ROLE_WORKER, description: { hostname: "seed-a" } },
    { id: id("n2"), role: NodeRole.NODE_ROLE_WORKER, description: { hostname: "web-2" } },
  ],
});

function webJob(state: "running" | "done", peerBytes = 32 * MIB) {
  const ended = state === "done";
  return {
    jobId: `${WEB}.4.c0ffeec0ffeec0ff`,
    serviceId: WEB,
    specVersion: 4n,
    image: "127.0.0.1:5000/web:2",
    manifestDigest: DIGEST,
    state,
    sizeBytes: BigInt(64 * MIB),
    startedAt: new Date(NOW - 30_000),
    endedAt: ended ? new Date(NOW - 1000) : undefined,
    nodes: [
      { nodeId: id("n1"), zone: "a", role: "seed", state: "done", bytesFromRegistry: BigInt(64 * MIB) },
      { nodeId: id("n2"), zone: "a", role: "peer", state: ended ? "done" : "running", bytesFromPeers: BigInt(ended ? 64 * MIB : peerBytes) },
      { nodeId: id("n9"), zone: "a", role: "peer", state: "failed", bytesFromPeers: 0n, message: "PIECE_CORRUPT: piece 3\x1b[31m\nforged" },
    ],
  };
}

test("piped: SERVICE by name is resolved to its ID, one table with hostnames, sizes and progress, no escape sequences", async () => {
  fake.reset({ listServices: services, listNodes: nodes, listPrefetchJobs: () => ({ jobs: [webJob("running")] }) });
  const r = await runShoal([...sock, "image", "prefetch", "status", "web"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fake.callsTo("listPrefetchJobs"), [{ service: WEB }]);
  assert.doesNotMatch(r.stdout, RAW_UNSAFE, "piped output has no cursor movement and no raw control character");
  const lines = r.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 6, r.stdout);
  assert.match(lines[1]!, /^web +4 +127\.0\.0\.1:5000\/web:2 +c0ffeec0ffee +running +64\.0 MiB +\S+$/);
  assert.match(lines[3]!, /^ {2}seed-a +a +seed +done +0 B +64\.0 MiB +100%$/);
  assert.match(lines[4]!, /^ {2}n90000000000 +a +peer +failed +0 B +0 B +0% +PIECE_CORRUPT: piece 3\\x1b\[31m\\x0aforged$/, "no hostname: its ID");
  assert.match(lines[5]!, /^ {2}web-2 +a +peer +running +32\.0 MiB +0 B +50%$/);
});

test("--format json: the jobs with camelCase fields, numbers as numbers, ISO times; no SERVICE asks for every job", async () => {
  fake.reset({ listServices: services, listNodes: nodes, listPrefetchJobs: () => ({ jobs: [webJob("done"), { ...webJob("running"), jobId: "x", serviceId: id("gone"), nodes: [] }] }) });
  const r = await runShoal([...sock, "image", "prefetch", "status", "--format", "json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fake.callsTo("listPrefetchJobs"), [{ service: "" }]);
  const jobs = JSON.parse(r.stdout);
  assert.equal(jobs.length, 2);
  const [done, orphan] = jobs;
  assert.deepEqual(
    { ...done, nodes: undefined },
    {
      jobId: `${WEB}.4.c0ffeec0ffeec0ff`,
      serviceId: WEB,
      serviceName: "web",
      specVersion: 4,
      image: "127.0.0.1:5000/web:2",
      manifestDigest: DIGEST,
      state: "done",
      sizeBytes: 64 * MIB,
      startedAt: "2026-12-01T11:59:30.000Z",
      endedAt: "2026-12-01T11:59:59.000Z",
      message: "",
      nodes: undefined,
    },
  );
  assert.deepEqual(done.nodes[0], { nodeId: id("n1"), hostname: "seed-a", zone: "a", role: "seed", state: "done", bytesFromPeers: 0, bytesFromRegistry: 64 * MIB, progress: 1, message: "" });
  assert.equal(done.nodes[1].nodeId, id("n9"));
  assert.equal(done.nodes[1].hostname, "", "a node not in ListNodes has no hostname");
  assert.equal(done.nodes[1].message, "PIECE_CORRUPT: piece 3\\x1b[31m\\x0aforged");
  assert.equal(orphan.serviceName, "", "a service that is gone has no name");
  assert.equal(orphan.endedAt, "");
});

test("an unknown SERVICE exits 5 before asking for jobs; a service removed meanwhile is the server's NOT_FOUND, also 5", async () => {
  fake.reset({ listServices: services });
  const unknown = await runShoal([...sock, "image", "prefetch", "status", "nope"]);
  assert.equal(unknown.code, 5, unknown.stderr);
  assert.equal(unknown.stderr, "Error: no service matches nope: list services with `shoal service ls`\n");
  assert.equal(unknown.stdout, "");
  assert.deepEqual(fake.callsTo("listPrefetchJobs"), []);
  fake.reset({ listServices: services, listPrefetchJobs: () => new ShoalError("NOT_FOUND", "service " + API + " does not exist") });
  const raced = await runShoal([...sock, "image", "prefetch", "status", API.slice(0, 6)]);
  assert.equal(raced.code, 5, raced.stderr);
  assert.deepEqual(fake.callsTo("listPrefetchJobs"), [{ service: API }], "an ID prefix resolves like every command's");
  assert.match(raced.stderr, /^Error: service api0+ does not exist\n$/);
  const bad = await runShoal([...sock, "image", "prefetch", "status", "--format", "yaml"]);
  assert.equal(bad.code, 2);
});

/** runCli in this process, as on a terminal of 100 columns. */
async function onTerminal(args: string[], clock: Clock, io: Partial<CliIo> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli([...sock, ...args], {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    stdin: Readable.from([]),
    env: {},
    stdoutIsTTY: true,
    columns: () => 100,
    clock,
    ...io,
  });
  return { code, stdout, stderr };
}

/** Wall time stands still; the pause between frames is over at once. */
const immediateClock: Clock = {
  nowMs: () => NOW,
  setTimeout(fn) {
    const handle = setImmediate(fn);
    return { cancel: () => clearImmediate(handle) };
  },
  setInterval() {
    throw new Error("not used");
  },
  sleep: () => new Promise((resolve) => setImmediate(resolve)),
};

test("on a terminal: redraws in place until every job has ended, then leaves the final table and exits 0", { timeout: 20_000 }, async () => {
  fake.reset({
    listServices: services,
    listNodes: nodes,
    listPrefetchJobs: (_req, i) => ({ jobs: [i < 2 ? webJob("running", (16 + 16 * i) * MIB) : webJob("done")] }),
  });
  const r = await onTerminal(["image", "prefetch", "status"], immediateClock);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(fake.callsTo("listPrefetchJobs").length, 3, "it stops asking once the job is done");
  assert.equal(fake.callsTo("listServices").length, 1, "names are asked once, not every frame");
  assert.equal(fake.callsTo("listNodes").length, 1);
  const frames = r.stdout.split("\r\x1b[6A\x1b[J");
  assert.equal(frames.length, 3, `each later frame first erases the 6 rows of the one before:\n${JSON.stringify(r.stdout)}`);
  assert.match(frames[0]!, /web-2 +a +peer +running +16\.0 MiB +0 B +25%/);
  assert.match(frames[1]!, /web-2 +a +peer +running +32\.0 MiB +0 B +50%/);
  assert.match(frames[2]!, /^web +4 .* done /m);
  assert.match(frames[2]!, /web-2 +a +peer +done +64\.0 MiB +0 B +100%/);
  for (const frame of frames.slice(0, 2)) assert.ok(frame.split("\n").every((line) => Array.from(line).length <= 100), "live frames fit the terminal");
  assert.match(frames[0]!, /^ {2}n90000000000 .* PIECE_CORRUPT: [^\n]*…$/m, "cut to the width while live");
  assert.match(frames[2]!, /PIECE_CORRUPT: piece 3\\x1b\[31m\\x0aforged$/m, "the final table is whole");
  assert.ok(frames[2]!.endsWith("\n"));
  assert.doesNotMatch(r.stdout.replaceAll("\r\x1b[6A\x1b[J", ""), RAW_UNSAFE, "no control character but the redraw's own");
});

test("on a terminal: Ctrl-C stops watching at once, keeps the last frame, exits 0 and lets go of SIGINT", { timeout: 20_000 }, async () => {
  fake.reset({ listServices: services, listNodes: nodes, listPrefetchJobs: () => ({ jobs: [webJob("running")] }) });
  const clock = new ManualClock(NOW); // never advanced: the pause between frames never ends by itself
  let handler: (() => void) | undefined;
  let released = false;
  const run = onTerminal(["image", "prefetch", "status", "web"], clock, {
    onInterrupt: (h) => {
      handler = h;
      return () => (released = true);
    },
  });
  let settled = false;
  void run.finally(() => (settled = true));
  // Until the first frame is drawn and the pause after it begins (a run that ends first fails here).
  while (clock.pendingTimers === 0 && !settled) await new Promise((resolve) => setTimeout(resolve, 1));
  if (settled) assert.fail(`the command ended without waiting for the next frame: ${JSON.stringify(await run)}`);
  assert.ok(handler !== undefined, "the live display listens for Ctrl-C");
  handler();
  const r = await run;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(released, "the SIGINT listener is removed");
  assert.equal(fake.callsTo("listPrefetchJobs").length, 1);
  assert.doesNotMatch(r.stdout, /\x1b/, "one frame, nothing erased");
  assert.match(r.stdout, /web-2 +a +peer +running +32\.0 MiB/);
});

test("on a terminal --format json prints once, even while jobs run; no jobs prints a sentence and exits", { timeout: 20_000 }, async () => {
  fake.reset({ listServices: services, listNodes: nodes, listPrefetchJobs: () => ({ jobs: [webJob("running")] }) });
  const json = await onTerminal(["image", "prefetch", "status", "--format", "json"], new ManualClock(NOW));
  assert.equal(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout)[0].state, "running");
  fake.reset({ listServices: services, listPrefetchJobs: () => ({ jobs: [] }) });
  const none = await onTerminal(["image", "prefetch", "status", "api"], new ManualClock(NOW));
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, "No prefetch jobs.\n");
});
