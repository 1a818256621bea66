// `service create` / `service update` waiting for their tasks, against a fake daemon, in this
// process (runCli) with an injected clock. On a terminal: the ID first, then a display redrawn in
// place until every task of the new spec runs (exit 0), a failed task's error on stderr (exit 1),
// Ctrl-C (exit 0, SIGINT let go), 10 minutes (exit 3). --detach returns at once; so does a
// non-terminal, unless --wait, which prints one line per state change on stderr and only the ID on
// stdout; --detach with --wait is a usage error before any call.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { ManualClock, type Clock } from "../../src/base/clock.js";
import { ShoalError } from "../../src/base/errors.js";
import { runCli } from "../../src/cli/program.js";
import type { CliIo } from "../../src/cli/context.js";
import { newTask } from "../../src/manager/orchestrator/task-template.js";
import { NodeRole, Service, TaskState, UpdateState, type Task } from "../../src/proto/shoal/v1/objects.js";
import { FakeDaemon } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const NOW = Date.parse("2026-12-01T12:00:00.000Z");
const MIB = 1024 * 1024;
const WEB = id("web");
const IMAGE = "127.0.0.1:5000/web:1";
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

function web(specVersion = 1n, image = IMAGE, extra: Record<string, unknown> = {}): Service {
  return Service.fromPartial({ id: WEB, meta: { version: 7n }, specVersion, spec: { name: "web", replicas: 2, container: { image } }, ...extra });
}

let seq = 0;
function task(svc: Service, slot: number, state: TaskState, extra: { message?: string; err?: string; desired?: TaskState; id?: string } = {}): Task {
  const t = newTask(svc, { slot, nodeId: "", imageDigest: "sha256:" + "2".repeat(64), nowMs: NOW, restartCount: 0, id: extra.id ?? id(`t${seq++}`) });
  t.nodeId = state >= TaskState.TASK_STATE_ASSIGNED ? id(`n${slot}`) : "";
  t.desiredState = extra.desired ?? TaskState.TASK_STATE_RUNNING;
  t.status = { state, message: extra.message ?? "", err: extra.err ?? "", timestamp: new Date(NOW), exitCode: 0, pid: 0 };
  return t;
}

const nodes = () => ({
  nodes: [
    { id: id("n1"), role: NodeRole.NODE_ROLE_WORKER, description: { hostname: "w1" } },
    { id: id("n2"), role: NodeRole.NODE_ROLE_WORKER, description: { hostname: "w2" } },
  ],
});

const PREPARING = "prefetching image: 40 of 64 MiB (peers 32 MiB, registry 8 MiB)";
/** Pending, then one preparing (with the prefetch progress in its message), then both running: the same two tasks. */
function createStory(svc: Service): (req: unknown, i: number) => object {
  const [a, b] = [{ id: id("ta") }, { id: id("tb") }];
  return (_req, i) => ({
    tasks:
      i === 0
        ? [task(svc, 1, TaskState.TASK_STATE_PENDING, { ...a, message: "waiting for a node" }), task(svc, 2, TaskState.TASK_STATE_PENDING, { ...b, message: "waiting for a node" })]
        : i === 1
          ? [task(svc, 1, TaskState.TASK_STATE_RUNNING, a), task(svc, 2, TaskState.TASK_STATE_PREPARING, { ...b, message: PREPARING })]
          : [task(svc, 1, TaskState.TASK_STATE_RUNNING, a), task(svc, 2, TaskState.TASK_STATE_RUNNING, b)],
  });
}

const prefetchJob = () => ({
  jobs: [
    {
      jobId: `${WEB}.1.x`,
      serviceId: WEB,
      specVersion: 1n,
      image: IMAGE,
      state: "running",
      sizeBytes: BigInt(64 * MIB),
      startedAt: new Date(NOW - 5000),
      nodes: [
        { nodeId: id("n1"), role: "seed", state: "done", bytesFromRegistry: BigInt(64 * MIB) },
        { nodeId: id("n2"), role: "peer", state: "running", bytesFromPeers: BigInt(32 * MIB), bytesFromRegistry: BigInt(8 * MIB) },
      ],
    },
  ],
});

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

async function run(args: string[], io: Partial<CliIo> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli([...sock, ...args], {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    stdin: Readable.from([]),
    env: {},
    ...io,
  });
  return { code, stdout, stderr };
}

/** As on a terminal of 100 columns (unless `extra` says otherwise). */
const terminal = (clock: Clock = immediateClock, extra: Partial<CliIo> = {}): Partial<CliIo> => ({ stdoutIsTTY: true, columns: () => 100, clock, ...extra });

const CREATE = ["service", "create", "--name", "web", "--replicas", "2", "--image", IMAGE];

test("on a terminal: the ID first, then redrawn in place until both tasks run, the prefetch progress shown; exit 0", { timeout: 20_000 }, async () => {
  const svc = web();
  fake.reset({ createService: () => ({ service: svc }), getService: () => ({ service: svc }), listTasks: createStory(svc), listNodes: nodes, listPrefetchJobs: prefetchJob });
  const r = await run(CREATE, terminal(immediateClock, { columns: () => 120 }));
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith(`${WEB}\n`), "the service ID comes first, on a line of its own");
  assert.equal(fake.callsTo("listTasks").length, 3, "it stops asking once every task runs");
  assert.deepEqual(fake.callsTo("listTasks")[0], { serviceId: WEB, nodeId: "" });
  assert.deepEqual(fake.callsTo("listPrefetchJobs")[0], { service: WEB });
  const frames = r.stdout.slice(WEB.length + 1).split(/\r\x1b\[\d+A\x1b\[J/);
  assert.equal(frames.length, 3, JSON.stringify(r.stdout));
  assert.match(frames[0]!, /^web: 0 of 2 tasks running\n/);
  assert.match(frames[0]!, /^web\.1 +pending +waiting for a node$/m);
  assert.match(frames[1]!, /^web\.2 +w2 +preparing +prefetching image: 40 of 64 MiB \(peers 32 MiB, registry 8 MiB\)$/m);
  assert.match(frames[1]!, /^prefetch running: 1 of 2 nodes done, 32\.0 MiB from peers, 72\.0 MiB from the registry \(image 64\.0 MiB\)$/m);
  assert.match(frames[2]!, /^web: 2 of 2 tasks running: converged\n/);
  assert.match(frames[2]!, /^web\.1 +w1 +running$/m);
  assert.doesNotMatch(r.stdout.replace(/\r\x1b\[\d+A\x1b\[J/g, ""), RAW_UNSAFE);
  for (const frame of frames.slice(0, 2)) assert.ok(frame.split("\n").every((line) => Array.from(line).length <= 120), "live frames fit the terminal");
  assert.equal(fake.callsTo("listNodes").length, 1, "hostnames are asked once (the prefetch job named both nodes at the first look), not every frame");
});

test("on a terminal: a failed task of the new service exits 1 with its error; the final frame shows it whole", { timeout: 20_000 }, async () => {
  const svc = web();
  const ERR = `exit status 3: /app: not found (${"x".repeat(80)})`;
  fake.reset({
    createService: () => ({ service: svc }),
    getService: () => ({ service: svc }),
    listNodes: nodes,
    listTasks: (_req, i) => ({
      tasks:
        i === 0
          ? [task(svc, 1, TaskState.TASK_STATE_STARTING), task(svc, 2, TaskState.TASK_STATE_PREPARING)]
          : [task(svc, 1, TaskState.TASK_STATE_RUNNING), task(svc, 2, TaskState.TASK_STATE_FAILED, { err: ERR, desired: TaskState.TASK_STATE_SHUTDOWN })],
    }),
  });
  const r = await run(CREATE, terminal());
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `Error: task web.2 on w2 failed: ${ERR}; the service stays; see \`shoal service ps web\`\n`);
  assert.equal(fake.callsTo("listTasks").length, 2);
  assert.ok(r.stdout.startsWith(`${WEB}\n`));
  assert.match(r.stdout, /web: 1 of 2 tasks running: failed\n/);
  assert.ok(r.stdout.split("\n").some((line) => /^web\.2 +w2 +failed +exit status 3: /.test(line) && line.endsWith(ERR)), `the final frame is whole, wider than the terminal:\n${r.stdout}`);
});

test("--detach returns at once on a terminal; a non-terminal returns at once without it; --detach --wait is exit 2 before any call", { timeout: 20_000 }, async () => {
  const svc = web();
  const script = { createService: () => ({ service: svc }), getService: () => ({ service: svc }), listTasks: createStory(svc) };
  for (const [args, io] of [
    [[...CREATE, "--detach"], terminal(new ManualClock(NOW))],
    [[...CREATE, "-d"], terminal(new ManualClock(NOW))],
    [CREATE, {}],
    [["service", "update", "web", "--image", "127.0.0.1:5000/web:2", "-d"], terminal(new ManualClock(NOW))],
  ] as const) {
    fake.reset({ ...script, listServices: () => ({ services: [svc] }), updateService: () => ({ service: web(2n) }) });
    const r = await run([...args], io);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout, `${WEB}\n`, args.join(" "));
    assert.equal(r.stderr, "");
    assert.deepEqual(fake.callsTo("listTasks"), [], `${args.join(" ")}: no watching`);
    assert.deepEqual(fake.callsTo("getService"), []);
  }
  fake.reset(script);
  const both = await run([...CREATE, "--detach", "--wait"], terminal());
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--detach and --wait contradict each other/);
  assert.deepEqual(fake.calls, [], "nothing was asked or written");
});

test("not a terminal, --wait: stdout is only the ID, stderr one line per task state change and the end", { timeout: 20_000 }, async () => {
  const svc = web();
  fake.reset({ createService: () => ({ service: svc }), getService: () => ({ service: svc }), listTasks: createStory(svc), listNodes: nodes, listPrefetchJobs: prefetchJob });
  const r = await run([...CREATE, "--wait"], { clock: immediateClock });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${WEB}\n`);
  assert.equal(
    r.stderr,
    ["web.1: pending: waiting for a node", "web.2: pending: waiting for a node", "web.1: running on w1", "web.2: preparing on w2", "web.2: running on w2", "web: 2 of 2 tasks running: converged", ""].join("\n"),
  );
  assert.doesNotMatch(r.stderr, /\x1b/);
});

test("on a terminal: Ctrl-C stops watching, exits 0 and lets go of SIGINT; the service stays", { timeout: 20_000 }, async () => {
  const svc = web();
  fake.reset({ createService: () => ({ service: svc }), getService: () => ({ service: svc }), listTasks: () => ({ tasks: [task(svc, 1, TaskState.TASK_STATE_PENDING)] }) });
  const clock = new ManualClock(NOW); // never advanced: the pause between frames never ends by itself
  let handler: (() => void) | undefined;
  let released = false;
  const running = run(CREATE, terminal(clock, { onInterrupt: (h) => ((handler = h), () => (released = true)) }));
  let settled = false;
  void running.finally(() => (settled = true));
  while (clock.pendingTimers === 0 && !settled) await new Promise((resolve) => setTimeout(resolve, 1));
  if (settled) assert.fail(`the command ended without waiting: ${JSON.stringify(await running)}`);
  assert.ok(handler !== undefined, "the live display listens for Ctrl-C");
  handler();
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(released, "the SIGINT listener is removed");
  assert.match(r.stderr, /stopped watching: service web stays and its tasks go on; see `shoal service ps web`/);
  assert.equal(fake.callsTo("listTasks").length, 1);
  assert.deepEqual(fake.callsTo("removeService"), [], "the service stays");
});

test("on a terminal: after 10 minutes without converging, exit 3 saying the tasks go on", { timeout: 20_000 }, async () => {
  const svc = web();
  fake.reset({ createService: () => ({ service: svc }), getService: () => ({ service: svc }), listTasks: () => ({ tasks: [task(svc, 1, TaskState.TASK_STATE_PENDING, { message: "no node in zone a satisfies the task" })] }) });
  let now = NOW;
  const jumping: Clock = { ...immediateClock, nowMs: () => now, setTimeout: (fn) => ((now += 4 * 60_000), immediateClock.setTimeout(fn, 0)) };
  const r = await run(CREATE, terminal(jumping));
  assert.equal(r.code, 3, r.stderr);
  assert.equal(fake.callsTo("listTasks").length, 4, "asked at 0, 4, 8 and 12 minutes");
  assert.match(r.stderr, /^Error: web: 0 of 2 tasks running after 10 minutes; stopped watching, the tasks go on: see `shoal service ps web`\n$/);
});

test("update on a terminal: the previous spec's tasks do not count, it ends when the new ones run and the update completes", { timeout: 20_000 }, async () => {
  const v1 = web(1n);
  const v2 = web(2n, "127.0.0.1:5000/web:2");
  const updating = web(2n, "127.0.0.1:5000/web:2", { updateStatus: { state: UpdateState.UPDATE_STATE_UPDATING, specVersion: 2n } });
  const done = web(2n, "127.0.0.1:5000/web:2", { updateStatus: { state: UpdateState.UPDATE_STATE_COMPLETED, specVersion: 2n } });
  const oldTasks = [task(v1, 1, TaskState.TASK_STATE_RUNNING), task(v1, 2, TaskState.TASK_STATE_RUNNING)];
  const newTasks = [task(v2, 1, TaskState.TASK_STATE_RUNNING), task(v2, 2, TaskState.TASK_STATE_RUNNING)];
  const stopped = oldTasks.map((t) => ({ ...t, desiredState: TaskState.TASK_STATE_SHUTDOWN }));
  fake.reset({
    listServices: () => ({ services: [v1] }),
    updateService: () => ({ service: v2 }),
    listNodes: nodes,
    getService: (_req, i) => ({ service: i === 0 ? v2 : i === 1 ? updating : done }),
    listTasks: (_req, i) => ({ tasks: i === 0 ? oldTasks : [...stopped, ...newTasks] }),
  });
  const r = await run(["service", "update", "web", "--image", "127.0.0.1:5000/web:2"], terminal());
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith(`${WEB}\n`));
  assert.equal(fake.callsTo("listTasks").length, 3, "all running but still UPDATING (its monitor period) is not the end");
  const frames = r.stdout.slice(WEB.length + 1).split(/\r\x1b\[\d+A\x1b\[J/);
  assert.match(frames[0]!, /^web: 0 of 2 tasks running\n/);
  assert.match(frames[0]!, /^web\.1 +w1 +running \(previous spec\)$/m);
  assert.match(frames[1]!, /^web: 2 of 2 tasks running, update in progress\n/);
  assert.match(frames[2]!, /^web: 2 of 2 tasks running: converged\n/);
});

test("an update that changes nothing is not failed by a failure from before it", { timeout: 20_000 }, async () => {
  const svc = web(3n);
  const tasks = [task(svc, 1, TaskState.TASK_STATE_RUNNING), task(svc, 2, TaskState.TASK_STATE_RUNNING), task(svc, 2, TaskState.TASK_STATE_FAILED, { err: "old crash", desired: TaskState.TASK_STATE_SHUTDOWN })];
  fake.reset({ listServices: () => ({ services: [svc] }), updateService: () => ({ service: svc }), getService: () => ({ service: svc }), listTasks: () => ({ tasks }) });
  const r = await run(["service", "update", "web", "--replicas", "2"], terminal());
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /web: 2 of 2 tasks running: converged/);
});

test("a look the managers cannot answer for a moment (no leader) is skipped; a service removed meanwhile ends it with exit 5", { timeout: 20_000 }, async () => {
  const svc = web();
  const story = createStory(svc);
  fake.reset({
    createService: () => ({ service: svc }),
    getService: () => ({ service: svc }),
    listNodes: nodes,
    listTasks: (req, i) => (i === 1 ? new ShoalError("NO_QUORUM", "no leader right now") : story(req, i === 0 ? 0 : 2)),
  });
  const r = await run(CREATE, terminal());
  assert.equal(r.code, 0, r.stderr);
  assert.equal(fake.callsTo("listTasks").length, 3);
  assert.match(r.stdout, /web: 2 of 2 tasks running: converged\n/);

  fake.reset({ createService: () => ({ service: svc }), getService: (_req, i) => (i === 0 ? { service: svc } : new ShoalError("NOT_FOUND", "service web does not exist")), listTasks: story });
  let now = NOW; // minutes pass between looks, so a watch that skipped the NOT_FOUND would end at the bound, not hang
  const gone = await run(CREATE, terminal({ ...immediateClock, nowMs: () => now, setTimeout: (fn) => ((now += 4 * 60_000), immediateClock.setTimeout(fn, 0)) }));
  assert.equal(gone.code, 5, gone.stderr);
  assert.match(gone.stderr, /^Error: service web does not exist\n$/);
});
