// The fixture of the workload end-to-end tests: a local registry (Debian's docker-registry) holding
// a busybox test image, managers and workers as child processes running runc containers, each node
// with its own tmpfs directory for secret files, and the workers labelled into their zones (waiting
// until their reissued certificates say so). On teardown ProcessCluster.close deletes the
// containers a SIGKILLed agent left behind before the cluster's directories are removed.
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { TaskView } from "../../src/cli/views.js";
import { ensureContainerTools } from "../../scripts/lib/container-tools.js";
import { startRegistry } from "../../scripts/lib/registry.js";
import { buildTestImage } from "../../scripts/lib/test-image.js";
import { FAST_DAEMON_FLAGS, ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";

/** A row of `shoal service ps --format json`. */
export type TaskRow = TaskView;

export interface ZonedCluster {
  cluster: ProcessCluster;
  /** The first manager: every CLI call of the tests goes through it. */
  m1: NodeProcess;
  managers: NodeProcess[];
  workers: NodeProcess[];
  /** The test image's reference in the local registry. */
  image: string;
  /** The tmpfs directory that holds each node's secret files, `shm/<node name>`. */
  shm: string;
  /** Node ID of each worker, by name. */
  ids: Map<string, string>;
  /** `shoal ARGS` through m1; asserts it succeeded and returns its stdout. */
  ok(args: string[]): Promise<string>;
  /** `service ps NAME --format json`. */
  tasks(service: string): Promise<TaskRow[]>;
  /** A worker's name from its node ID (for messages). */
  nameOf(nodeId: string): string;
  /** IDs of the containers in a node's runc state root. */
  containers(node: NodeProcess): string[];
}

export interface ZonedClusterOptions {
  managers: string[];
  workers: [name: string, zone: string][];
  /** Pushes the test image and returns its reference; default: busybox in a plain local registry. */
  image?: () => Promise<string>;
  /** More daemon flags for the workers. */
  workerFlags?: string[];
}

/**
 * Runs `body`; when it throws, puts each node's state and the end of its log in the test's
 * diagnostics first (the cluster's directory is deleted at teardown, and with it the logs).
 */
export async function withNodeLogsOnFailure<T>(t: TestContext, cluster: ProcessCluster, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    for (const n of cluster.nodes.values()) {
      const tail = n.readLog().trimEnd().split("\n").slice(-12).map((line) => line.slice(0, 400));
      t.diagnostic(`${n.name} (${n.exitStatus}), the end of its log:\n${tail.join("\n")}`);
    }
    throw err;
  }
}

export async function startZonedCluster(t: TestContext, opts: ZonedClusterOptions): Promise<ZonedCluster> {
  await ensureContainerTools((line) => t.diagnostic(line));
  const pushImage =
    opts.image ??
    (async () => {
      const registry = await startRegistry();
      t.after(() => registry.stop());
      return (await buildTestImage({ registry: registry.host, name: "shoal-e2e/web", tag: "1" })).reference;
    });
  const image = await pushImage();

  // Each node keeps its secret files on its own tmpfs directory (an agent wipes its own at start).
  const shm = mkdtempSync("/dev/shm/shoal-e2e-");
  t.after(() => rmSync(shm, { recursive: true, force: true }));
  const cluster = new ProcessCluster(FAST_DAEMON_FLAGS);
  t.after(() => cluster.close());
  const add = (name: string, extra: string[] = []): Promise<NodeProcess> => cluster.add(name, ["--secrets-dir", join(shm, name), ...extra]);
  const managers: NodeProcess[] = [];
  for (const name of opts.managers) managers.push(await add(name));
  const workers = await Promise.all(opts.workers.map(([name]) => add(name, opts.workerFlags)));
  const m1 = managers[0]!;
  const { workerToken, managerToken } = await cluster.init(m1.name);
  for (const m of managers.slice(1)) await cluster.join(m.name, managerToken, m1.addr);
  for (const w of workers) await cluster.join(w.name, workerToken, m1.addr);
  await cluster.waitReady(m1, managers.length + workers.length, 60_000);
  await waitForVoters(m1, managers.length, { timeoutMs: 30_000 });

  const ok = async (args: string[]): Promise<string> => {
    const r = await m1.shoal(args);
    assert.equal(r.code, 0, `shoal ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const ids = new Map<string, string>();
  for (const w of workers) ids.set(w.name, (await w.info()).nodeId);
  const zoned = opts.workers.filter(([, zone]) => zone !== "");
  for (const [name, zone] of zoned) await ok(["node", "update", "--label-add", `zone=${zone}`, ids.get(name)!]);
  await waitFor(
    "the relabelled workers to hold certificates of their zones",
    async () => {
      const nodes = JSON.parse(await ok(["node", "ls", "--format", "json"])) as { id: string; certificate: { zone: string } }[];
      return zoned.every(([name, zone]) => nodes.find((n) => n.id === ids.get(name))?.certificate.zone === zone) ? true : undefined;
    },
    60_000,
    500,
  );
  return {
    cluster,
    m1,
    managers,
    workers,
    image,
    shm,
    ids,
    ok,
    tasks: async (service) => JSON.parse(await ok(["service", "ps", service, "--format", "json"])) as TaskRow[],
    nameOf: (nodeId) => [...ids].find(([, id]) => id === nodeId)?.[0] ?? `manager ${nodeId}`,
    containers: (n) => n.containers(),
  };
}
