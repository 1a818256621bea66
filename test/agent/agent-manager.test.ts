// The worker agent against a real in-process manager (TLS listener, raft, encrypted store, the real
// dispatcher): tasks and a secret written straight into the store (no orchestrator or scheduler in
// this test), assigned to the node itself (a manager runs an agent too). The task statuses the
// agent reports arrive in the store: RUNNING then COMPLETE (exit 0), FAILED with the exit code,
// SHUTDOWN after desired SHUTDOWN; the secret file exists (0400, 0700 directory) while the task runs
// and is gone after; its bytes are in no file under the node's data dir and in no log line.
// Needs the dispatcher that pushes assignments and records statuses (branch h-disp): on the h-exec
// branch alone its dispatcher sends an empty set and this test times out; it passed on a merge of
// h-exec f420455 with h-disp ec82ea3.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { newId } from "../../src/base/ids.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { Manager } from "../../src/manager/manager.js";
import { Secret, Service, Task, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { freePort, waitFor } from "../e2e/cluster.js";
import { filesContaining } from "./runner-fixture.js";

const GUARD_MS = 30_000;

test("tasks written into a real manager's store run on its agent and their statuses reach the store", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-agent-mgr-"));
  const dir = join(root, "m1");
  const secretsRoot = `/dev/shm/shoal-test-mgr-${process.pid}`;
  const logLines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });
  const addr = `127.0.0.1:${await freePort()}`;
  // The test writes tasks into the store itself: no orchestrator or scheduler to rewrite them.
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger, raftTiming: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 }, heartbeatPeriodMs: 300, secretsRoot, workloadLoops: false });
  const client = new DaemonClient(daemon.socketPath);
  t.after(async () => {
    client.close();
    await daemon.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(secretsRoot, { recursive: true, force: true });
  });
  await client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const nodeId = (await client.info()).nodeId;
  // The daemon keeps its manager private; this test writes tasks straight into its store.
  const manager = (daemon as unknown as { manager: Manager | undefined }).manager!;
  await waitFor("the manager to lead", () => manager.isLeader, GUARD_MS);
  await waitFor("the node's agent connected", () => daemon.nodeAgent?.isConnected, GUARD_MS);
  const ctx = manager.ctx;

  const secretBytes = Buffer.from(`mgr-secret-${process.pid}-${newId()}`);
  const secret = Secret.fromPartial({ id: newId(), spec: { name: "db", data: secretBytes, zone: "" } });
  const service = Service.fromPartial({ id: newId(), spec: { name: "web", replicas: 1, container: { command: ["sleep", "30"], secrets: [{ secretId: secret.id, secretName: "db", target: "s" }] } }, specVersion: 1n });
  await ctx.propose((tx) => {
    tx.createSecret(secret);
    tx.createService(service);
  });
  const task = (command: string[], withSecret = false): Task =>
    Task.fromPartial({
      id: newId(),
      serviceId: service.id,
      serviceName: "web",
      nodeId,
      zone: "",
      desiredState: TaskState.TASK_STATE_RUNNING,
      status: { state: TaskState.TASK_STATE_ASSIGNED, message: "assigned by the test" },
      spec: { command, stopGracePeriodMs: 500n, secrets: withSecret ? [{ secretId: secret.id, secretName: "db", target: "s" }] : [] },
      executor: "process",
      specVersion: 1n,
    });
  const ok = task(["sh", "-c", "sleep 0.3"]);
  const bad = task(["sh", "-c", "exit 4"]);
  const withSecret = task(["sh", "-c", 'test -s "$SHOAL_SECRETS_DIR/s" || exit 9; sleep 30'], true);
  const proposedAt = Date.now();
  await ctx.propose((tx) => {
    for (const t of [ok, bad, withSecret]) tx.createTask(t);
  });
  const stateOf = (id: string): TaskState | undefined => ctx.store.getTask(id)?.status?.state;
  const until = (id: string, state: TaskState) => waitFor(`task ${id} ${TaskState[state]} in the store (now ${TaskState[stateOf(id) ?? 0]})`, () => stateOf(id) === state || undefined, GUARD_MS, 20);

  await until(ok.id, TaskState.TASK_STATE_COMPLETE);
  assert.equal(ctx.store.getTask(ok.id)!.status!.exitCode, 0);
  await until(bad.id, TaskState.TASK_STATE_FAILED);
  assert.equal(ctx.store.getTask(bad.id)!.status!.exitCode, 4);

  await until(withSecret.id, TaskState.TASK_STATE_RUNNING);
  t.diagnostic(`three process tasks written to the store: the last RUNNING in the store after ${Date.now() - proposedAt} ms`);
  const secretDir = join(secretsRoot, withSecret.id, "secrets");
  assert.equal(statSync(secretDir).mode & 0o777, 0o700);
  assert.equal(statSync(join(secretDir, "s")).mode & 0o777, 0o400);
  assert.deepEqual(readFileSync(join(secretDir, "s")), secretBytes);
  const current = ctx.store.getTask(withSecret.id)!;
  await ctx.propose((tx) => tx.updateTask({ ...current, desiredState: TaskState.TASK_STATE_SHUTDOWN }));
  await until(withSecret.id, TaskState.TASK_STATE_SHUTDOWN);
  await waitFor("the secret files to go", () => !existsSync(join(secretsRoot, withSecret.id)), GUARD_MS);
  assert.deepEqual(filesContaining(dir, secretBytes), [], "the secret's bytes are in no file under the data dir (the store is sealed)");
  assert.equal(logLines.filter((l) => l.includes(secretBytes.toString()) || l.includes(secretBytes.toString("base64"))).length, 0, "nor in any log line");
});
