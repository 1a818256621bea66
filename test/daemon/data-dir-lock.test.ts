// DIR/LOCK (DESIGN.md §2) with real daemons: a second `shoal daemon` on a data dir that a live daemon
// owns exits at once, non-zero, naming the directory and the owner's PID, and leaves the owner's
// socket alone, on a worker, on a manager and on a locked manager (autolock on, before unlock); a
// SIGKILLed daemon's lock does not block its restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { DataDirLock } from "../../src/daemon/data-dir-lock.js";
import { FAST_DAEMON_FLAGS, freePort, ProcessCluster, REPO_ROOT, type NodeProcess } from "../e2e/cluster.js";

const CLI_ENTRY = join(REPO_ROOT, "src/cli/main.ts");
/** Liveness guard only: the twin should exit within about a second of starting. */
const TWIN_EXIT_GUARD_MS = 20_000;

interface TwinResult {
  code: number | null;
  stderr: string;
  elapsedMs: number;
}

/** Starts a second daemon on `node`'s data dir (another port) and waits for it to exit. */
async function twin(node: NodeProcess): Promise<TwinResult> {
  const port = await freePort();
  const started = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", CLI_ENTRY, "--data-dir", node.dataDir, "daemon", "--listen-addr", `127.0.0.1:${port}`, ...FAST_DAEMON_FLAGS], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, SHOAL_SOCKET: "" },
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout!.resume();
  return new Promise((resolve) => {
    const guard = setTimeout(() => child.kill("SIGKILL"), TWIN_EXIT_GUARD_MS);
    child.once("exit", (code) => {
      clearTimeout(guard);
      resolve({ code, stderr, elapsedMs: Date.now() - started });
    });
  });
}

async function assertTwinRefused(t: { diagnostic(m: string): void }, node: NodeProcess, what: string): Promise<void> {
  const before = await node.info();
  const result = await twin(node);
  t.diagnostic(`${what}: the twin exited with ${result.code} after ${result.elapsedMs} ms`);
  assert.notEqual(result.code, 0, `${what}: the twin must fail (stderr: ${result.stderr})`);
  assert.notEqual(result.code, null, `${what}: the twin was still running after ${TWIN_EXIT_GUARD_MS} ms (stderr: ${result.stderr})`);
  assert.ok(result.stderr.includes(node.dataDir), `${what}: the error names the data dir: ${result.stderr}`);
  assert.match(result.stderr, new RegExp(`in use by another shoal daemon \\(process ${node.child!.pid}\\b`), `${what}: the error names the owner`);
  // The owner keeps its socket and its state.
  const after = await node.info();
  assert.equal(after.nodeId, before.nodeId);
  assert.equal(after.locked, before.locked);
  assert.notEqual(after.state, "inactive");
}

test("the lock in-process: a second holder is refused until the first releases", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-lock-"));
  try {
    const first = await DataDirLock.acquire(dir, Date.UTC(2026, 0, 1));
    await assert.rejects(DataDirLock.acquire(dir, 0), (e) => isShoalError(e, "FAILED_PRECONDITION") && e.message.includes(dir) && e.message.includes(`process ${process.pid}`));
    await first.release();
    const again = await DataDirLock.acquire(dir, 0);
    await again.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a daemon of another data dir does not take a --socket that a live daemon answers on", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-sock-"));
  const socketPath = join(root, "shared.sock");
  const silent = pino({ level: "silent" });
  const first = await startDaemon({ dataDir: join(root, "a"), listenAddr: `127.0.0.1:${await freePort()}`, socketPath, logger: silent });
  const client = new DaemonClient(socketPath);
  t.after(async () => {
    client.close();
    await first.stop();
    rmSync(root, { recursive: true, force: true });
  });
  await assert.rejects(
    startDaemon({ dataDir: join(root, "b"), listenAddr: `127.0.0.1:${await freePort()}`, socketPath, logger: silent }),
    (e) => isShoalError(e, "FAILED_PRECONDITION") && e.message.includes(socketPath),
  );
  assert.equal((await client.info()).state, "inactive", "the first daemon still answers on its socket");
  // The refused daemon released its data dir: it can start on its own socket.
  const second = await startDaemon({ dataDir: join(root, "b"), listenAddr: `127.0.0.1:${await freePort()}`, logger: silent });
  await second.stop();
});

test("a second daemon on an owned data dir exits at once: worker, manager, locked manager; SIGKILL leaves no stale lock", { timeout: 150_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, w1] = (await Promise.all(["m1", "w1"].map((n) => cluster.add(n)))) as [NodeProcess, NodeProcess];
  const init = await m1.cli(["init", "--autolock"]);
  assert.equal(init.code, 0, init.stderr);
  const unlockKey = /SWMKEY-1-[A-Za-z0-9+/]{43}/.exec(init.stdout)![0];
  const workerToken = (await m1.cli(["join-token", "worker", "-q"])).stdout.trim();
  await cluster.join("w1", workerToken, m1.addr);
  assert.equal((await w1.info()).nodeId.length, 25);

  await assertTwinRefused(t, w1, "worker");
  await assertTwinRefused(t, m1, "manager");

  await m1.stop();
  await m1.start();
  assert.equal((await m1.info()).state, "locked");
  await assertTwinRefused(t, m1, "locked manager");
  // The locked owner still unlocks: the twin did not take its socket or its store.
  const unlocked = await m1.cli(["unlock"], `${unlockKey}\n`);
  assert.equal(unlocked.code, 0, unlocked.stderr);
  assert.equal((await m1.info()).locked, false);

  // A crashed daemon's lock goes with its process: the restart is not blocked.
  await w1.stop("SIGKILL");
  await w1.start();
  assert.equal((await w1.info()).state !== "inactive", true);
});
