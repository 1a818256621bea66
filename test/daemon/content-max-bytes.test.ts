// `shoal daemon --content-max-bytes SIZE` (issue 10): the size syntax of the rate flags without
// "/s" (binary suffixes, 0 = no cap), bad values INVALID_ARGUMENT naming the flag on the command
// line and in DaemonOptions; the daemon's GC roots from the agent's tasks and prefetch orders; and
// the node's content store collected at start when it is over the cap.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import pino from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import type { Agent } from "../../src/agent/agent.js";
import { AssignmentSet } from "../../src/agent/assignment-set.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { NodeImages } from "../../src/agent/images/node-images.js";
import { registerDaemonCommand } from "../../src/cli/daemon-command.js";
import { parseByteSize } from "../../src/daemon/byte-rate.js";
import { gcRootsOf, InUseWatch } from "../../src/daemon/content-gc-roots.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { sha256Digest } from "../../src/oci/digest.js";
import { freePort } from "../e2e/cluster.js";
import { AssignmentAction, AssignmentsMessage_Type, PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";
import { Task, TaskState } from "../../src/proto/shoal/v1/objects.js";

const silent = pino({ level: "silent" });
const FLAG = "--content-max-bytes";
const d = (n: number): string => `sha256:${n.toString(16).padStart(64, "0")}`;

function namesFlag(e: unknown): boolean {
  return isShoalError(e, "INVALID_ARGUMENT") && (e as Error).message.includes(FLAG);
}

test("--content-max-bytes takes bytes with binary suffixes, 0 for no cap, and refuses the rest naming the flag", () => {
  assert.equal(parseByteSize("0", FLAG), 0);
  assert.equal(parseByteSize("1048576", FLAG), 1024 * 1024);
  assert.equal(parseByteSize("512M", FLAG), 512 * 1024 ** 2);
  assert.equal(parseByteSize("10G", FLAG), 10 * 1024 ** 3);
  assert.equal(parseByteSize("10g", FLAG), 10 * 1024 ** 3);
  assert.equal(parseByteSize("1.5T", FLAG), 1.5 * 1024 ** 4);
  assert.equal(parseByteSize("64MiB", FLAG), 64 * 1024 ** 2);
  assert.equal(parseByteSize("640k", FLAG), 640 * 1024);
  for (const bad of ["", "-1", "ten", "10X", "10M/s", "1e9", "2048T", "0x10", "1 G B"]) {
    assert.throws(() => parseByteSize(bad, FLAG), namesFlag, JSON.stringify(bad));
  }
});

test("shoal daemon refuses a bad --content-max-bytes before starting, and its help lists the flag", async () => {
  const program = new Command("shoal").option("--data-dir <dir>").exitOverride();
  registerDaemonCommand(program);
  const dir = await mkdtemp(join(tmpdir(), "shoal-content-flag-"));
  try {
    for (const bad of ["lots", "-5", "3X"]) {
      await assert.rejects(program.parseAsync(["node", "shoal", "--data-dir", dir, "daemon", "--listen-addr", "127.0.0.1:9", FLAG, bad]), namesFlag, bad);
    }
    assert.equal(existsSync(join(dir, "content")), false, "nothing was started");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const help = program.commands.find((c) => c.name() === "daemon")!.helpInformation();
  assert.match(help, /--content-max-bytes <size>/);
  assert.match(help, /10G/);
});

test("a DaemonOptions contentMaxBytes that is not a whole number of bytes is refused naming the flag", async () => {
  const dir = await mkdtemp(join(tmpdir(), "shoal-content-opts-"));
  try {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) {
      const outcome = await startDaemon({ dataDir: join(dir, String(bad)), listenAddr: `127.0.0.1:${await freePort()}`, logger: silent, contentMaxBytes: bad }).then(
        async (daemon) => {
          await daemon.stop();
          return undefined;
        },
        (err: unknown) => err,
      );
      assert.ok(outcome !== undefined && namesFlag(outcome), `${bad}: ${String(outcome)}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function fakeAgent(tasks: Task[], orders: PrefetchOrder[], running: string[]): Agent {
  const assignments = new AssignmentSet();
  assignments.apply({
    type: AssignmentsMessage_Type.TYPE_COMPLETE,
    appliesTo: "",
    resultsIn: "1",
    changes: [
      ...tasks.map((task) => ({ assignment: { task }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
      ...orders.map((prefetch) => ({ assignment: { prefetch }, action: AssignmentAction.ASSIGNMENT_ACTION_UPDATE })),
    ],
  });
  return { assignments, runner: { runningTaskIds: running } } as unknown as Agent;
}

const task = (id: string, state: TaskState, digest: string): Task => Task.fromPartial({ id, status: { state }, spec: { image: "r/app", imageDigest: digest } });

test("GC roots: images of tasks the runner has or that are about to start, and every prefetch order's image, blobs and manifest", () => {
  const manifest = Buffer.from("{}");
  const agent = fakeAgent(
    [
      task("new", TaskState.TASK_STATE_NEW, d(1)),
      task("assigned", TaskState.TASK_STATE_ASSIGNED, d(2)),
      task("running-here", TaskState.TASK_STATE_RUNNING, d(3)),
      task("preparing-here", TaskState.TASK_STATE_PREPARING, d(4)),
      // The managers still think it runs, but the runner no longer has it: it ended here.
      task("ended-here", TaskState.TASK_STATE_RUNNING, d(5)),
      task("complete", TaskState.TASK_STATE_COMPLETE, d(6)),
      task("failed", TaskState.TASK_STATE_FAILED, d(7)),
      task("process", TaskState.TASK_STATE_NEW, ""),
    ],
    [PrefetchOrder.fromPartial({ jobId: "j1", manifestDigest: d(8), blobs: [{ digest: d(9), size: 10n, pieceSize: 4 }], manifest })],
    ["running-here", "preparing-here"],
  );
  const roots = gcRootsOf(agent);
  assert.deepEqual(new Set(roots.images), new Set([d(1), d(2), d(3), d(4), d(8)]));
  assert.deepEqual([...(roots.blobs ?? [])], [d(9)]);
  assert.deepEqual([...(roots.manifests ?? [])], [manifest]);
  assert.deepEqual(gcRootsOf(undefined).images, []);
});

test("InUseWatch says when a task's image or an order stopped being in use", () => {
  const watch = new InUseWatch();
  const order = PrefetchOrder.fromPartial({ jobId: "j1", manifestDigest: d(8) });
  assert.equal(watch.changed(fakeAgent([task("t", TaskState.TASK_STATE_ASSIGNED, d(1))], [order], [])), false);
  assert.equal(watch.changed(fakeAgent([task("t", TaskState.TASK_STATE_ACCEPTED, d(1))], [order], ["t"])), false, "still in use");
  assert.equal(watch.changed(fakeAgent([task("t", TaskState.TASK_STATE_COMPLETE, d(1))], [order], [])), true, "the task ended");
  assert.equal(watch.changed(fakeAgent([], [order], [])), false);
  assert.equal(watch.changed(fakeAgent([], [], [])), true, "the order went");
});

test("NodeImages collects at start when its store on disk is over the cap, and creates nothing when there is none", async () => {
  const dir = await mkdtemp(join(tmpdir(), "shoal-node-images-gc-"));
  try {
    const contentDir = join(dir, "content");
    const clock = new ManualClock(Date.now());
    // Nothing on disk: a request creates nothing.
    const empty = new NodeImages({ contentDir, logger: silent, clock, contentMaxBytes: 1000 });
    empty.requestGc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(existsSync(contentDir), false);

    const earlier = new ContentStore(contentDir, { clock });
    await earlier.open();
    const bytes = [Buffer.alloc(800, 1), Buffer.alloc(800, 2)];
    for (const b of bytes) await earlier.ensure(sha256Digest(b), b.length, async () => (async function* () { yield b; })(), "test");
    const kept = sha256Digest(bytes[0]!);
    const images = new NodeImages({ contentDir, logger: silent, clock, contentMaxBytes: 1000, gcRoots: () => ({ images: [], blobs: [kept] }) });
    images.requestGc();
    const deadline = Date.now() + 10_000;
    while (clock.pendingTimers === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    clock.advance(0);
    while ((await new ContentStore(contentDir).list()).length > 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(await new ContentStore(contentDir).list(), [kept]);
    images.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
