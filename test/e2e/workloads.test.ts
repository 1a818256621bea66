// Workloads in security zones, end to end (issue 9, DESIGN §3 rules 6–8 and §7), with real parts:
// 3 managers and 4 workers as child processes, a local registry (Debian's docker-registry) holding
// a busybox test image, and runc containers. Workers are in zones a, a, b and the default zone. A
// zone-a service with a zone-a secret runs only on the zone-a workers, as containers that can read
// /run/secrets/s and cannot write it; the zone-b and default workers never receive the task or the
// secret (checked on what their agents hold: files and logs), the secret's bytes are in no file of
// any node outside its tmpfs and in no log; when a zone-a worker is killed its tasks move to the other
// zone-a worker only; once removed (`node rm --force`) and started again, the killed worker's agent
// stops its leftover containers and deletes their secret files; with no zone-a worker left the tasks
// stay PENDING with a reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { filesContaining, waitFor, type NodeProcess } from "./cluster.js";
import { startZonedCluster, type TaskRow } from "./zoned-cluster.js";

test("a zoned service with a zoned secret runs only in its zone, as runc containers, and moves only within it", { timeout: 420_000 }, async (t) => {
  const z = await startZonedCluster(t, { managers: ["m1", "m2", "m3"], workers: [["w1", "a"], ["w2", "a"], ["w3", "b"], ["w4", ""]] });
  const { cluster, ids, image: imageRef, shm, nameOf } = z;
  const m1 = z.m1;
  const [w1, w2, w3, w4] = z.workers as [NodeProcess, NodeProcess, NodeProcess, NodeProcess];

  // A zone-a secret; its bytes are random, so finding them anywhere means they leaked.
  const secret = randomBytes(24).toString("hex");
  const secretDir = mkdtempSync(join(tmpdir(), "shoal-e2e-secret-"));
  t.after(() => rmSync(secretDir, { recursive: true, force: true }));
  writeFileSync(join(secretDir, "s"), secret, { mode: 0o600 });
  await z.ok(["secret", "create", "--zone", "a", "s", join(secretDir, "s")]);
  // A zone-a secret on a service of zone b, or of the default zone: refused.
  for (const zoneArgs of [["--zone", "b"], []]) {
    const refused = await m1.shoal(["service", "create", "--name", `bad${zoneArgs.length}`, ...zoneArgs, "--secret", "s", "--image", imageRef, "--", "sleep", "1"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /zone/);
  }

  // The container proves what it can do with the secret: it reads the right bytes (compared by hash,
  // so the secret itself is not in the service spec) and cannot write the file; otherwise it exits
  // non-zero and never becomes RUNNING.
  const sha = createHash("sha256").update(secret).digest("hex");
  const check = [
    `[ "$(busybox sha256sum /run/secrets/s | busybox cut -d' ' -f1)" = "${sha}" ] || exit 3`,
    "if echo x > /run/secrets/s 2>/dev/null; then exit 4; fi",
    "exec sleep 600",
  ].join("; ");
  const createdAt = Date.now();
  await z.ok(["service", "create", "--name", "web", "--zone", "a", "--replicas", "4", "--secret", "s", "--image", imageRef, "--", "sh", "-c", check]);
  const tasks = (): Promise<TaskRow[]> => z.tasks("web");
  const running = (rows: TaskRow[]) => rows.filter((r) => r.desiredState === "running" && r.state === "running");
  await waitFor("4 running tasks of web", async () => (running(await tasks()).length === 4 ? true : undefined), 120_000, 500);
  t.diagnostic(`service create → 4/4 running (pull, unpack, runc): ${Date.now() - createdAt} ms`);
  const zoneA = new Set([ids.get("w1"), ids.get("w2")]);
  for (const r of await tasks()) assert.ok(zoneA.has(r.nodeId), `task ${r.id} ran on ${nameOf(r.nodeId)}, outside zone a`);

  // What the zone-b and default workers hold: none of web's tasks, not the secret (their data dirs,
  // their tmpfs and their logs).
  const taskIds = (await tasks()).map((r) => r.id);
  for (const w of [w3, w4]) {
    for (const id of taskIds) {
      assert.deepEqual(filesContaining(w.dataDir, Buffer.from(id)), [], `${w.name} holds task ${id}`);
      assert.ok(!readFileSync(w.logFile).includes(id), `${w.name}'s log names task ${id}`);
    }
    assert.deepEqual(filesContaining(join(shm, w.name), Buffer.from(secret)), [], `${w.name} received the secret`);
  }
  // The secret's bytes: in no file of any node's data dir, no log, and no read API.
  for (const n of cluster.nodes.values()) {
    assert.deepEqual(filesContaining(n.dataDir, Buffer.from(secret)), [], `the secret is on ${n.name}'s disk`);
    assert.ok(!readFileSync(n.logFile).includes(secret), `the secret is in ${n.name}'s log`);
  }
  for (const args of [["secret", "inspect", "s"], ["service", "inspect", "web"], ["service", "ps", "web"], ["node", "ps", ids.get("w1")!]]) {
    assert.ok(!(await z.ok(args)).includes(secret), `shoal ${args.join(" ")} shows the secret`);
  }
  // It is on the zone-a workers' tmpfs while their tasks run.
  assert.ok(filesContaining(join(shm, "w1"), Buffer.from(secret)).length + filesContaining(join(shm, "w2"), Buffer.from(secret)).length >= 1);

  // SIGKILL a zone-a worker: its tasks move to the other zone-a worker, never out of the zone.
  const victim = (await tasks()).some((r) => r.nodeId === ids.get("w1")) ? w1 : w2;
  const survivor = victim === w1 ? w2 : w1;
  const killedAt = Date.now();
  await victim.stop("SIGKILL");
  await waitFor(
    `web's 4 tasks running on ${survivor.name}`,
    async () => {
      const rows = running(await tasks());
      return rows.length === 4 && rows.every((r) => r.nodeId === ids.get(survivor.name)) ? true : undefined;
    },
    90_000,
    500,
  );
  t.diagnostic(`${victim.name} killed → 4/4 running on ${survivor.name}: ${Date.now() - killedAt} ms (3 heartbeats of 300 ms + rescheduling + container start)`);
  for (const r of await tasks()) assert.ok(zoneA.has(r.nodeId) || r.nodeId === "", `task ${r.id} went to ${nameOf(r.nodeId)}, outside zone a`);

  // `node rm --force` of the killed worker: when its daemon runs again, its agent finds itself removed
  // and its containers and secret files are gone (the ones its SIGKILLed process left behind).
  await z.ok(["node", "rm", "--force", ids.get(victim.name)!]);
  await victim.start();
  await waitFor(
    `${victim.name}'s leftover containers and secret files to be gone`,
    async () => {
      if (z.containers(victim).length > 0 || filesContaining(join(shm, victim.name), Buffer.from(secret)).length > 0) return undefined;
      // ... and it left the cluster: it comes back only by joining again with a token.
      return (await victim.info()).nodeId === "" ? true : undefined;
    },
    60_000,
    500,
  );

  // No zone-a worker left: the tasks stay PENDING with a reason naming the zone.
  await survivor.stop("SIGKILL");
  await waitFor(
    "web's tasks pending with a reason",
    async () => {
      const live = (await tasks()).filter((r) => r.desiredState === "running");
      return live.length === 4 && live.every((r) => r.state === "pending" && /zone a/.test(r.error)) ? live : undefined;
    },
    90_000,
    500,
  );
  for (const r of await tasks()) assert.ok(zoneA.has(r.nodeId) || r.nodeId === "", `task ${r.id} went to ${nameOf(r.nodeId)}, outside zone a`);
  for (const w of [w3, w4]) assert.deepEqual(filesContaining(join(shm, w.name), Buffer.from(secret)), [], `${w.name} received the secret`);
});
