// The workload part of `npm run demo`: a local registry and a busybox image, two workers labelled
// into zone a, a zone-a secret, a zoned runc service whose containers check the secret is readable
// and read-only, the secret's bytes only on the tasks' tmpfs, and tasks that stay in their zone when
// a zone-a node goes (and stay PENDING, with the reason, when none is left).
import { execFile, execFileSync } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import type { Task } from "../src/proto/shoal/v1/objects.js";
import { TaskState } from "../src/proto/shoal/v1/objects.js";
import { ensureContainerTools, findExecutable } from "./lib/container-tools.js";
import { check, printedText, run, say, step } from "./lib/narration.js";
import { removeOnExit, type NodeProcess } from "./lib/process-cluster.js";
import { startRegistry, type LocalRegistry } from "./lib/registry.js";
import { buildTestImage, type TestImage } from "./lib/test-image.js";
import { waitFor } from "./lib/wait.js";

const execFileAsync = promisify(execFile);

export const SERVICE = "web";
export const SECRET = "web-token";
/** The container's own check: exit 3 if it cannot read its secret, 4 if it can write it; else it serves (sleeps) until SIGTERM. */
const CONTAINER_SCRIPT = [
  `f=/run/secrets/${SECRET}`,
  `test -s $f && cat $f >/dev/null || { echo "cannot read $f"; exit 3; }`,
  `if (echo x >>$f) 2>/dev/null; then echo "$f is writable"; exit 4; fi`,
  `echo "$f is readable and read-only"`,
  `trap "exit 0" TERM`,
  `while true; do sleep 1; done`,
].join("; ");

/** A node of the demo, as the workload steps need it. */
export interface DemoNode {
  node: NodeProcess;
  id: string;
  /** This node's `--secrets-dir` (tmpfs). */
  secretsDir: string;
}

export interface ImageStage {
  registry: LocalRegistry;
  image: TestImage;
}

/** Step 1: container tools (installed as root if missing), a registry on 127.0.0.1, a busybox image pushed to it. */
export async function prepareImage(): Promise<ImageStage> {
  step("container tools, a local OCI registry, and a small busybox image pushed to it");
  if (process.getuid?.() !== 0) say("not root: runc containers need root, so the tool check below fails with the command to run as root");
  await ensureContainerTools((line) => say(line));
  say(`tools: ${["runc", "umoci", "skopeo", "docker-registry", "busybox"].map((t) => findExecutable(t)).join(" ")}`);
  const registry = await startRegistry();
  removeOnExit(registry.workDir);
  removeOnExit(registry.dataDir);
  say(`registry (CNCF distribution) serving on http://${registry.host} (loopback only), data in ${registry.dataDir}`);
  const image = await buildTestImage({ registry: registry.host, name: "demo/busybox", tag: "1", cmd: ["sh"] });
  say(`built with umoci from busybox-static and pushed with skopeo: ${image.reference} = ${image.digest}`);
  return { registry, image };
}

/** Step 2a: both workers into zone a; the managers stay in zone default. */
export async function labelZones(via: NodeProcess, zoneA: DemoNode[]): Promise<void> {
  step("security zones: label both workers zone=a (the managers stay in zone default)");
  for (const w of zoneA) await run(via, ["node", "update", "--label-add", "zone=a", w.id]);
  const nodes = await via.client.listNodes();
  for (const w of zoneA) check(nodes.find((n) => n.id === w.id)?.spec?.labels["zone"] === "a", `${w.node.name} is not labelled zone=a`);
  // The dispatcher sends a zone-a task only to a node whose store entry and certificate both say zone a.
  for (const w of zoneA) {
    const uri = await waitFor(`${w.node.name}'s certificate to name zone a`, () => certificateUri(w.node), 30_000, 100);
    say(`${w.node.name}'s certificate was re-issued for its new zone: ${uri}`);
  }
}

/** The SPIFFE URI of the certificate on the node's disk, once it names zone a. */
function certificateUri(node: NodeProcess): string | undefined {
  const cert = new X509Certificate(fs.readFileSync(path.join(node.dataDir, "certificates", "node.crt")));
  const uri = /URI:(spiffe:\/\/[^,\s]+)/.exec(cert.subjectAltName ?? "")?.[1];
  return uri !== undefined && uri.includes("/zone/a/") ? uri : undefined;
}

function tasksOf(tasks: Task[], serviceId: string): Task[] {
  return tasks.filter((t) => t.serviceId === serviceId);
}

const isRunning = (t: Task): boolean => t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING;

async function serviceId(via: NodeProcess): Promise<string> {
  const found = (await via.client.listServices()).find((s) => s.spec?.name === SERVICE);
  check(found !== undefined, `service ${SERVICE} is not listed`);
  return found.id;
}

/** Polls until `count` tasks of the service run, all on `allowed` nodes; returns them. */
async function waitForRunning(via: NodeProcess, id: string, count: number, allowed: DemoNode[], timeoutMs: number): Promise<Task[]> {
  const allowedIds = new Set(allowed.map((n) => n.id));
  return waitFor(
    `${count} running tasks of ${SERVICE} on ${allowed.map((n) => n.node.name).join(" or ")}`,
    async () => {
      const running = tasksOf(await via.client.listTasks({ serviceId: id, nodeId: "" }), id).filter(isRunning);
      if (running.some((t) => !allowedIds.has(t.nodeId))) throw new Error(`a task of ${SERVICE} runs outside ${[...allowedIds].join(",")}`);
      return running.length === count ? running : undefined;
    },
    timeoutMs,
    100,
  );
}

function nameOf(nodes: DemoNode[], nodeId: string): string {
  return nodes.find((n) => n.id === nodeId)?.node.name ?? (nodeId === "" ? "(none)" : nodeId);
}

/** `service ps` (each daemon reports its demo name as its hostname), then each running task's node and zone. */
async function showServicePs(via: NodeProcess, all: DemoNode[]): Promise<Task[]> {
  const ps = await run(via, ["service", "ps", SERVICE]);
  const id = await serviceId(via);
  const tasks = tasksOf(await via.client.listTasks({ serviceId: id, nodeId: "" }), id);
  for (const t of tasks.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING)) {
    say(`  ${SERVICE}.${t.slot} task ${t.id.slice(0, 12)} → ${nameOf(all, t.nodeId)}, zone ${t.zone || "default"}, ${TaskState[t.status?.state ?? 0]!.replace("TASK_STATE_", "")}${t.status?.message ? ` (${t.status.message})` : ""}`);
  }
  check(ps.stdout.includes(SERVICE), "service ps does not list the service");
  return tasks;
}

export interface Deployed {
  secretValue: string;
  createToRunningMs: number;
  tasks: Task[];
}

/** Step 2b: a zone-a secret and a zoned service using it; 2/2 RUNNING on the zone-a workers. */
export async function deployZonedService(via: NodeProcess, image: TestImage, zoneA: DemoNode[], all: DemoNode[]): Promise<Deployed> {
  step(`a zone-a secret and a zoned runc service that uses it`);
  const secretValue = randomBytes(24).toString("base64url");
  await run(via, ["secret", "create", "--zone", "a", SECRET, "-"], { input: secretValue, stdinNote: "24 random bytes on stdin, never printed" });
  const refused = await run(via, ["service", "create", "--name", "web-default-zone", "--replicas", "1", "--secret", SECRET, "--image", image.reference, "--", "sh", "-c", "sleep 1"], { expectFail: true });
  check(/zone/.test(refused.stderr), "a default-zone service was refused, but not for its zone");
  say("a service outside zone a cannot attach the zone-a secret");
  const args = ["service", "create", "--name", SERVICE, "--zone", "a", "--replicas", "2", "--secret", SECRET, "--stop-grace-period", "2s", "--image", image.reference, "--", "sh", "-c", CONTAINER_SCRIPT];
  const createdAt = performance.now();
  await run(via, args);
  const id = await serviceId(via);
  const tasks = await waitForRunning(via, id, 2, zoneA, 90_000);
  const createToRunningMs = performance.now() - createdAt;
  say(`2/2 RUNNING ${Math.round(createToRunningMs)} ms after \`service create\` started (resolve, schedule, dispatch, pull, unpack, runc run)`);
  check(new Set(tasks.map((t) => t.nodeId)).size === 2, "the two replicas were not spread over the two zone-a workers");
  // The container exits 3 or 4 within milliseconds of starting if its check fails: still the same two tasks, still running, proves it passed.
  await new Promise((r) => setTimeout(r, 3000));
  const later = tasksOf(await via.client.listTasks({ serviceId: id, nodeId: "" }), id);
  for (const t of tasks) check(later.some((l) => l.id === t.id && isRunning(l)), `task ${t.id} did not stay RUNNING: its container's secret check failed (see service ps)`);
  check(later.every((t) => t.status?.state !== TaskState.TASK_STATE_FAILED), "a task of web FAILED");
  say("3 s later the same two tasks still run: each container read /run/secrets/web-token and failed to write it (else it exits 3 or 4)");
  await showServicePs(via, all);
  const ls = await run(via, ["service", "ls"]);
  check(/\bweb\b.*\b2\/2\b.*\ba\s*$/m.test(ls.stdout), "service ls does not show web 2/2 in zone a");
  return { secretValue, createToRunningMs, tasks };
}

/** Every regular file under `dir` (whose bytes contain `needle`, if given). */
function filesContaining(dir: string, needle?: Buffer): string[] {
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile() && (needle === undefined || fs.readFileSync(p).includes(needle))) found.push(p);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return found;
}

/** Step 3: the secret has no read API and lives only on the tmpfs of the nodes running its tasks. */
export async function checkSecretConfinement(via: NodeProcess, deployed: Deployed, all: DemoNode[], dataRoot: string): Promise<void> {
  step("the secret is readable only inside its tasks");
  const inspect = await run(via, ["secret", "inspect", SECRET]);
  check(!inspect.stdout.includes(deployed.secretValue), "secret inspect printed the secret's data");
  check(!/"data"\s*:/.test(inspect.stdout), "secret inspect has a data field");
  say("secret inspect: metadata and a keyed MAC only, no data field");
  const needle = Buffer.from(deployed.secretValue);
  const onDisk = filesContaining(dataRoot, needle);
  check(onDisk.length === 0, `the secret's bytes are in ${onDisk.join(", ")}`);
  say(`grep of every file under ${dataRoot} (all 5 data dirs: LevelDB, certificates, worker state, bundles, logs): 0 files hold the bytes`);
  const holders = new Map<string, string[]>();
  for (const n of all) holders.set(n.node.name, filesContaining(n.secretsDir, needle));
  for (const t of deployed.tasks) {
    const owner = all.find((n) => n.id === t.nodeId)!;
    const file = path.join(owner.secretsDir, t.id, "secrets", SECRET);
    check(holders.get(owner.node.name)!.includes(file), `${owner.node.name} has no secret file for its task ${t.id}`);
    const mode = fs.statSync(file).mode & 0o777;
    check(mode === 0o400, `${file} has mode ${mode.toString(8)}`);
    say(`${owner.node.name}: ${file} (tmpfs, 0400), bind-mounted read-only at /run/secrets/${SECRET}`);
  }
  const elsewhere = [...holders].filter(([name, files]) => files.length > 0 && !deployed.tasks.some((t) => nameOf(all, t.nodeId) === name));
  check(elsewhere.length === 0, `nodes without a task hold the secret: ${elsewhere.map(([n]) => n).join(", ")}`);
  say(`the managers' secrets dirs (no task of ${SERVICE}): nothing`);
  check(!printedText().includes(deployed.secretValue), "the demo's own output contains the secret");
  say("and the bytes appear nowhere in this demo's output");
}

/** Step 4a, after `removed` left the cluster: its tasks come back on the other zone-a worker, not on a manager. */
export async function checkTasksMovedWithinZone(via: NodeProcess, removed: DemoNode, remaining: DemoNode, all: DemoNode[], removedAtMs: number): Promise<void> {
  say(`${SERVICE}'s task on ${removed.node.name} is replaced inside zone a: only ${remaining.node.name} is left there, so both run on it`);
  const id = await serviceId(via);
  await waitForRunning(via, id, 2, [remaining], 60_000);
  say(`2/2 RUNNING on ${remaining.node.name} (seen ${Math.round(performance.now() - removedAtMs)} ms after \`node rm\` returned); none went to the zone-default managers`);
  await showServicePs(via, all);
  const left = await waitFor(`${removed.node.name} to stop its containers and remove their secret files`, async () => {
    const containers = await containersOf(removed);
    return containers.length === 0 && filesContaining(removed.secretsDir).length === 0 ? true : undefined;
  }, 20_000, 200).catch(() => false);
  check(left, `${removed.node.name} still runs a container or holds a secret file after its removal`);
  say(`${removed.node.name} (removed) runs no container any more (runc list) and its secrets dir is empty`);
}

/** Step 4b: drain the last zone-a worker: the tasks stay PENDING and say why, and never spill into zone default. */
export async function checkNoZoneNodeLeft(via: NodeProcess, last: DemoNode, all: DemoNode[]): Promise<void> {
  step(`drain ${last.node.name}, the last zone-a node: ${SERVICE}'s tasks stay PENDING with the reason`);
  await run(via, ["node", "update", "--availability", "drain", last.id]);
  const id = await serviceId(via);
  const pending = await waitFor(
    "web's tasks to be PENDING with a zone reason",
    async () => {
      const live = tasksOf(await via.client.listTasks({ serviceId: id, nodeId: "" }), id).filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING);
      return live.length === 2 && live.every((t) => t.status?.state === TaskState.TASK_STATE_PENDING && t.nodeId === "" && /zone a/.test(t.status.message)) ? live : undefined;
    },
    60_000,
    200,
  );
  await showServicePs(via, all);
  say(`reason: "${pending[0]!.status!.message}"`);
  const ls = await run(via, ["service", "ls"]);
  check(/\bweb\b.*\b0\/2\b/.test(ls.stdout), "service ls does not show web 0/2");
  const cleared = await waitFor(`${last.node.name} to stop its containers and remove their secret files`, async () => {
    return (await containersOf(last)).length === 0 && filesContaining(last.secretsDir).length === 0 ? true : undefined;
  }, 20_000, 200).catch(() => false);
  check(cleared, `${last.node.name} still runs a container or holds secret files after its tasks were shut down`);
  say(`${last.node.name}'s containers were stopped and its secret files removed (runc list: none; secrets dir: empty)`);
}

/** Step 4c, after a leader change: the new leader's loops place the pending tasks once a zone-a node is active again. */
export async function checkZoneNodeBack(via: NodeProcess, back: DemoNode, all: DemoNode[]): Promise<void> {
  step(`make ${back.node.name} active again: the new leader's scheduler places the pending tasks there`);
  await run(via, ["node", "update", "--availability", "active", back.id]);
  const since = performance.now();
  await waitForRunning(via, await serviceId(via), 2, [back], 60_000);
  say(`2/2 RUNNING on ${back.node.name} ${Math.round(performance.now() - since)} ms after \`node update\``);
  await showServicePs(via, all);
  const ls = await run(via, ["service", "ls"]);
  check(/\bweb\b.*\b2\/2\b/.test(ls.stdout), "service ls does not show web 2/2");
}

/** The runc containers under the node's worker dir (its runc --root). */
async function containersOf(n: DemoNode): Promise<{ id: string; status: string }[]> {
  const runc = findExecutable("runc");
  const root = path.join(n.node.dataDir, "worker", "runc");
  if (runc === undefined || !fs.existsSync(root)) return [];
  const { stdout } = await execFileAsync(runc, ["--root", root, "list", "--format", "json"]);
  return (JSON.parse(stdout.trim() || "null") as { id: string; status: string }[] | null) ?? [];
}

/** Tear-down: the runc containers left under any node's worker dir (there should be none once the daemons stopped). */
export async function leftoverContainers(all: DemoNode[]): Promise<string[]> {
  const left: string[] = [];
  for (const n of all) {
    for (const c of await containersOf(n).catch(() => [])) {
      left.push(`${n.node.name}:${c.id} (${c.status})`);
      await execFileAsync(findExecutable("runc")!, ["--root", path.join(n.node.dataDir, "worker", "runc"), "delete", "--force", c.id]).catch(() => undefined);
    }
  }
  return left;
}

/**
 * On Ctrl-C the harness SIGKILLs the daemons, which leaves their containers running: kill and delete
 * them synchronously (an 'exit' handler cannot wait), before the data dirs holding their state go.
 */
export function deleteContainersOnExit(all: DemoNode[]): void {
  process.on("exit", () => {
    const runc = findExecutable("runc");
    if (runc === undefined) return;
    for (const n of all) {
      const root = path.join(n.node.dataDir, "worker", "runc");
      if (!fs.existsSync(root)) continue;
      try {
        const list = (JSON.parse(execFileSync(runc, ["--root", root, "list", "--format", "json"], { encoding: "utf8" }).trim() || "null") as { id: string }[] | null) ?? [];
        for (const c of list) execFileSync(runc, ["--root", root, "delete", "--force", c.id], { stdio: "ignore" });
      } catch {
        // best effort on the way out
      }
    }
  });
}
