// The runc executor with real containers (run through the heavy lock: it starts runc containers):
// a busybox task reads its secret at /run/secrets/s and cannot write it; a task past its memory
// limit is FAILED with exit 137; an isolated task sees only loopback; a task's cgroup directories,
// bundle and secret files are gone after it ends; a restarted agent removes a container an earlier
// agent process left running.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { RuncExecutor } from "../../src/agent/executor/runc/runc-executor.js";
import { SecretFiles } from "../../src/agent/secrets/secret-files.js";
import { TaskRunner } from "../../src/agent/task-runner.js";
import { WorkerState } from "../../src/agent/worker-state.js";
import { NetworkMode, TaskState, type Task } from "../../src/proto/shoal/v1/objects.js";
import { waitFor } from "../e2e/cluster.js";
import { busyboxProvider, Feed, filesContaining, makeSecret, makeTask, RecordingSink, requireContainerTools } from "./runner-fixture.js";

const silent = pino({ level: "silent" });
const IMAGE = { image: "127.0.0.1:5000/busybox:1", imageDigest: `sha256:${"ab".repeat(32)}` };

interface Worker {
  dir: string;
  executor: RuncExecutor;
  runner: TaskRunner;
  sink: RecordingSink;
  feed: Feed;
  secrets: SecretFiles;
  cgroupParent: string;
}

async function worker(t: TestContext, dir: string, tag: string): Promise<Worker> {
  const cgroupParent = `shoal-test-${tag}`;
  const executor = new RuncExecutor({ workerDir: dir, images: busyboxProvider(), clock: systemClock, logger: silent, cgroupParent });
  const secrets = new SecretFiles(`/dev/shm/shoal-test-${tag}`);
  const sink = new RecordingSink();
  const runner = new TaskRunner({ executors: [executor], secrets, reporter: sink, state: new WorkerState(dir), clock: systemClock, logger: silent });
  await runner.recover();
  t.after(async () => {
    await runner.stop();
    await secrets.wipeAll();
    for (const h of readdirSync("/sys/fs/cgroup")) rmdirIfThere(join("/sys/fs/cgroup", h, cgroupParent));
  });
  return { dir, executor, runner, sink, feed: new Feed(runner), secrets, cgroupParent };
}

function rmdirIfThere(path: string): void {
  try {
    rmdirSync(path);
  } catch {
    // absent, or not empty (the assertions say which task left something)
  }
}

function cgroupDirs(w: Worker, taskId: string): string[] {
  return readdirSync("/sys/fs/cgroup")
    .map((h) => join("/sys/fs/cgroup", h, w.cgroupParent, taskId))
    .filter((p) => existsSync(p));
}

function runcList(dir: string): string[] {
  const out = execFileSync("runc", ["--root", join(dir, "runc"), "list", "--format", "json"], { encoding: "utf8" }).trim();
  return ((JSON.parse(out === "" ? "null" : out) as { id: string }[] | null) ?? []).map((c) => c.id);
}

function output(w: Worker, task: Task): string {
  return w.runner.taskLog(task.id)?.read().toString("utf8") ?? "";
}

test("runc tasks: secrets read-only at /run/secrets, memory limit, loopback only, cleanup", { timeout: 120_000 }, async (t) => {
  requireContainerTools();
  const root = mkdtempSync(join(tmpdir(), "shoal-runc-"));
  const w = await worker(t, join(root, "worker"), `${process.pid}`);
  t.after(() => rmSync(root, { recursive: true, force: true })); // after the runner stopped (hooks run in order)

  await t.test("the secret is readable at /run/secrets/s and cannot be written or removed", async () => {
    const secretBytes = Buffer.from(`s3cr3t-${process.pid}-value`);
    const secret = makeSecret("db", secretBytes);
    const task = makeTask({
      ...IMAGE,
      command: ["sh", "-c", "cat /run/secrets/s; echo; if echo x > /run/secrets/s; then echo WROTE; fi; if rm -f /run/secrets/s; then echo REMOVED; fi; echo done; sleep 30"],
      secrets: [{ secretId: secret.id, secretName: "db", target: "s" }],
      stopGracePeriodMs: 300n,
    });
    w.feed.push([task], [secret]);
    await w.sink.waitFor(task.id, TaskState.TASK_STATE_RUNNING);
    await waitFor("the task's output", () => output(w, task).includes("done") || undefined, 10_000);
    const out = output(w, task);
    assert.ok(out.includes(secretBytes.toString()), `the container read its secret (output: ${out})`);
    assert.ok(!out.includes("WROTE") && !out.includes("REMOVED"), `the secret could not be changed (output: ${out})`);
    // On the host: tmpfs, 0700 directory, 0400 file, while the task runs.
    const dir = w.secrets.taskDir(task.id);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, "s")).mode & 0o777, 0o400);
    assert.ok(cgroupDirs(w, task.id).length > 0, "the task runs in its own cgroups");
    // Nothing of the secret under the worker's data dir.
    assert.deepEqual(filesContaining(w.dir, secretBytes), []);
    // Stop: PID 1 (sh) ignores SIGTERM, so this also takes the SIGKILL after the grace.
    w.feed.push([{ ...task, desiredState: TaskState.TASK_STATE_SHUTDOWN }], [secret]);
    const end = await w.sink.waitFor(task.id, TaskState.TASK_STATE_SHUTDOWN);
    assert.equal(end.exitCode, 137);
    await waitFor("the task's cleanup", () => !existsSync(join(w.secrets.rootDir, task.id)) && cgroupDirs(w, task.id).length === 0 && !existsSync(w.executor.bundleDir(task.id)) && !runcList(w.dir).includes(task.id), 10_000);
  });

  await t.test("a task that allocates past its memory limit is FAILED with exit 137", async () => {
    const task = makeTask({ ...IMAGE, command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], limits: { memoryBytes: 16n << 20n, nanoCpus: 0n, pids: 0n } });
    w.feed.push([task]);
    const end = await w.sink.waitFor(task.id, TaskState.TASK_STATE_FAILED);
    assert.equal(end.exitCode, 137, end.message);
    assert.deepEqual(w.sink.states(task.id), ["ACCEPTED", "PREPARING", "STARTING", "RUNNING", "FAILED"]);
    await waitFor("its cgroups to go", () => cgroupDirs(w, task.id).length === 0, 10_000);
    // The same allocation under a limit that fits completes.
    const fits = makeTask({ ...IMAGE, command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], limits: { memoryBytes: 256n << 20n, nanoCpus: 0n, pids: 0n } });
    w.feed.push([task, fits]);
    assert.equal((await w.sink.waitFor(fits.id, TaskState.TASK_STATE_COMPLETE)).exitCode, 0);
  });

  await t.test("an isolated task has only loopback; a host-network task sees the host's interfaces", async () => {
    const isolated = makeTask({ ...IMAGE, command: ["ls", "/sys/class/net"] });
    const host = makeTask({ ...IMAGE, command: ["ls", "/sys/class/net"], network: NetworkMode.NETWORK_MODE_HOST });
    w.feed.push([isolated, host]);
    await w.sink.waitFor(isolated.id, TaskState.TASK_STATE_COMPLETE);
    await w.sink.waitFor(host.id, TaskState.TASK_STATE_COMPLETE);
    assert.deepEqual(output(w, isolated).split(/\s+/).filter((s) => s !== ""), ["lo"]);
    const hostIfaces = readdirSync("/sys/class/net").sort();
    assert.deepEqual(output(w, host).split(/\s+/).filter((s) => s !== "").sort(), hostIfaces);
    assert.ok(hostIfaces.length > 1, "this machine has more than loopback");
  });

  await t.test("least privilege: Docker's capabilities, no new privileges, --read-only, --user with its secret readable", async () => {
    const secret = makeSecret("tok", Buffer.from(`user-secret-${process.pid}`));
    const asRoot = makeTask({ ...IMAGE, command: ["sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status"] });
    const asUser = makeTask({
      ...IMAGE,
      user: "1000",
      readOnly: true,
      secrets: [{ secretId: secret.id, secretName: "tok", target: "t" }],
      command: ["sh", "-c", "echo uid=$(id -u); cat /run/secrets/t; echo; touch /etc/x && echo WROTE-ROOTFS; touch /tmp/ok && echo TMP-OK"],
    });
    const started = Date.now();
    w.feed.push([asRoot, asUser], [secret]);
    await w.sink.waitFor(asRoot.id, TaskState.TASK_STATE_COMPLETE);
    t.diagnostic(`two busybox containers prepared, run and finished in ${Date.now() - started} ms`);
    const status = output(w, asRoot);
    assert.match(status, /CapEff:\s+00000000a80425fb/, status);
    assert.match(status, /CapBnd:\s+00000000a80425fb/, status);
    assert.match(status, /NoNewPrivs:\s+1/, status);
    await w.sink.waitFor(asUser.id, TaskState.TASK_STATE_COMPLETE);
    const out = output(w, asUser);
    assert.match(out, /uid=1000/);
    assert.ok(out.includes(`user-secret-${process.pid}`), `the non-root user reads its secret (output: ${out})`);
    assert.ok(!out.includes("WROTE-ROOTFS"), `the root filesystem is read-only (output: ${out})`);
    assert.ok(out.includes("TMP-OK"), `/tmp stays writable (output: ${out})`);
  });

  await t.test("a command the image cannot run: REJECTED before anything starts", async () => {
    const task = makeTask({ ...IMAGE, command: [], args: [] });
    // busybox's provider gives cmd ["sh"], so use a user the image does not have instead.
    const bad = makeTask({ ...IMAGE, command: ["true"], user: "nosuchuser" });
    w.feed.push([task, bad]);
    const rejected = await w.sink.waitFor(bad.id, TaskState.TASK_STATE_REJECTED);
    assert.match(rejected.message, /nosuchuser/);
    await w.sink.waitFor(task.id, TaskState.TASK_STATE_COMPLETE);
  });
});

test("a restarted agent removes the container an earlier agent process left running", { timeout: 60_000 }, async (t) => {
  requireContainerTools();
  const root = mkdtempSync(join(tmpdir(), "shoal-runc-restart-"));
  const dir = join(root, "worker");
  const tag = `r${process.pid}`;
  const first = await worker(t, dir, tag);
  const task = makeTask({ ...IMAGE, command: ["sleep", "300"] });
  first.feed.push([task]);
  await first.sink.waitFor(task.id, TaskState.TASK_STATE_RUNNING);
  assert.deepEqual(runcList(dir), [task.id]);
  assert.ok(cgroupDirs(first, task.id).length > 0);
  // The first agent process is gone without stopping its task (as after a crash): a new one starts
  // on the same data dir with no assignments yet.
  // A secret file the first process wrote is still on tmpfs.
  const stale = join(first.secrets.rootDir, task.id, "secrets");
  mkdirSync(stale, { recursive: true, mode: 0o700 });
  writeFileSync(join(stale, "s"), "stale secret", { mode: 0o400 });
  const second = await worker(t, dir, tag);
  assert.equal(existsSync(first.secrets.rootDir), false, "the agent start wiped the secrets directory");
  assert.deepEqual(runcList(dir), [], "the leftover container was deleted");
  assert.equal(cgroupDirs(second, task.id).length, 0, "and its cgroup directories removed");
  assert.equal(existsSync(second.executor.bundleDir(task.id)), false, "and its bundle");
  // The old `runc run` saw its container die.
  const end = await first.sink.waitFor(task.id, TaskState.TASK_STATE_FAILED);
  assert.equal(end.exitCode, 137);
  // The managers still think it runs here: the new agent reports it lost rather than leaving it RUNNING.
  second.feed.push([{ ...task, status: { ...task.status!, state: TaskState.TASK_STATE_RUNNING } }]);
  const lost = await second.sink.waitFor(task.id, TaskState.TASK_STATE_FAILED);
  assert.match(lost.message, /lost when the agent restarted/);
  t.after(() => rmSync(root, { recursive: true, force: true }));
});
