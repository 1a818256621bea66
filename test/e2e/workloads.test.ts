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
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureContainerTools } from "../../scripts/lib/container-tools.js";
import { startRegistry } from "../../scripts/lib/registry.js";
import { buildTestImage } from "../../scripts/lib/test-image.js";
import { FAST_DAEMON_FLAGS, ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";

interface TaskRow {
  id: string;
  nodeId: string;
  desiredState: string;
  state: string;
  error: string;
  zone: string;
}

/** Every file under `dir` (recursively) whose bytes contain `needle`. */
function filesContaining(dir: string, needle: Buffer): string[] {
  const found: string[] = [];
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      const p = join(d, name);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        try {
          if (readFileSync(p).includes(needle)) found.push(p);
        } catch {
          // a file that went away while we walked
        }
      }
    }
  };
  walk(dir);
  return found;
}

test("a zoned service with a zoned secret runs only in its zone, as runc containers, and moves only within it", { timeout: 420_000 }, async (t) => {
  await ensureContainerTools((line) => t.diagnostic(line));
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const image = await buildTestImage({ registry: registry.host, name: "shoal-e2e/web", tag: "1" });

  // Each node keeps its secret files on its own tmpfs directory (an agent wipes its own at start).
  const shm = mkdtempSync("/dev/shm/shoal-e2e-");
  t.after(() => rmSync(shm, { recursive: true, force: true }));
  const cluster = new ProcessCluster(FAST_DAEMON_FLAGS);
  // A SIGKILLed agent leaves its containers running (a restarted agent would clean them up): delete
  // what each node's runc state root still lists, before the cluster's directories are removed.
  t.after(async () => {
    for (const n of cluster.nodes.values()) {
      const root = join(n.dataDir, "worker", "runc");
      const listed = spawnSync("runc", ["--root", root, "list", "-q"], { encoding: "utf8" });
      for (const id of (listed.stdout ?? "").split("\n").filter((l) => l !== "")) spawnSync("runc", ["--root", root, "delete", "-f", id]);
    }
    await cluster.close();
  });
  const add = (name: string): Promise<NodeProcess> => cluster.add(name, ["--secrets-dir", join(shm, name)]);
  const [m1] = [await add("m1"), await add("m2"), await add("m3")];
  const workers = await Promise.all(["w1", "w2", "w3", "w4"].map(add));
  const [w1, w2, w3, w4] = workers as [NodeProcess, NodeProcess, NodeProcess, NodeProcess];
  const { workerToken, managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1!.addr);
  await cluster.join("m3", managerToken, m1!.addr);
  for (const w of workers) await cluster.join(w.name, workerToken, m1!.addr);
  await cluster.waitReady(m1!, 7, 60_000);
  await waitForVoters(m1!, 3, { timeoutMs: 30_000 });

  const ok = async (node: NodeProcess, args: string[]): Promise<string> => {
    const r = await node.shoal(args);
    assert.equal(r.code, 0, `shoal ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const idOf = async (n: NodeProcess): Promise<string> => (await n.info()).nodeId;
  const ids = new Map<string, string>();
  for (const n of workers) ids.set(n.name, await idOf(n));
  const nameOf = (nodeId: string): string => [...ids].find(([, id]) => id === nodeId)?.[0] ?? `manager ${nodeId}`;

  // Zones: w1 and w2 in a, w3 in b, w4 in the default zone. Wait for the reissued certificates.
  for (const [w, zone] of [[w1, "a"], [w2, "a"], [w3, "b"]] as const) await ok(m1!, ["node", "update", "--label-add", `zone=${zone}`, ids.get(w.name)!]);
  await waitFor(
    "the relabelled workers to hold certificates of their zones",
    async () => {
      const nodes = JSON.parse(await ok(m1!, ["node", "ls", "--format", "json"])) as { id: string; certificate: { zone: string } }[];
      const certZone = (name: string) => nodes.find((n) => n.id === ids.get(name))?.certificate.zone;
      return certZone("w1") === "a" && certZone("w2") === "a" && certZone("w3") === "b" ? true : undefined;
    },
    60_000,
    500,
  );

  // A zone-a secret; its bytes are random, so finding them anywhere means they leaked.
  const secret = randomBytes(24).toString("hex");
  const secretDir = mkdtempSync(join(tmpdir(), "shoal-e2e-secret-"));
  t.after(() => rmSync(secretDir, { recursive: true, force: true }));
  writeFileSync(join(secretDir, "s"), secret, { mode: 0o600 });
  await ok(m1!, ["secret", "create", "--zone", "a", "s", join(secretDir, "s")]);
  // A zone-a secret on a service of zone b, or of the default zone: refused.
  for (const zoneArgs of [["--zone", "b"], []]) {
    const refused = await m1!.shoal(["service", "create", "--name", `bad${zoneArgs.length}`, ...zoneArgs, "--secret", "s", "--image", image.reference, "--", "sleep", "1"]);
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
  await ok(m1!, ["service", "create", "--name", "web", "--zone", "a", "--replicas", "4", "--secret", "s", "--image", image.reference, "--", "sh", "-c", check]);
  const tasks = async (): Promise<TaskRow[]> => JSON.parse(await ok(m1!, ["service", "ps", "web", "--format", "json"])) as TaskRow[];
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
    assert.ok(!(await ok(m1!, args)).includes(secret), `shoal ${args.join(" ")} shows the secret`);
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
  await ok(m1!, ["node", "rm", "--force", ids.get(victim.name)!]);
  await victim.start();
  const runcRoot = join(victim.dataDir, "worker", "runc");
  await waitFor(
    `${victim.name}'s leftover containers and secret files to be gone`,
    async () => {
      const listed = spawnSync("runc", ["--root", runcRoot, "list", "-q"], { encoding: "utf8" });
      const containers = (listed.stdout ?? "").split("\n").filter((l) => l !== "");
      if (containers.length > 0 || filesContaining(join(shm, victim.name), Buffer.from(secret)).length > 0) return undefined;
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
