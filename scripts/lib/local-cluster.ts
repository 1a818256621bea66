// A whole cluster formed the way an operator forms one, through the real `shoal` CLI (init, join
// tokens, join), on ProcessCluster's daemons; plus the views the demo and the benchmarks poll.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ShoalError } from "../../src/base/errors.js";
import { infoView, nodeView, type NodeView } from "../../src/cli/views.js";
import { ProcessCluster, removeOnExit, type CliResult, type NodeProcess } from "./process-cluster.js";
import { waitFor } from "./wait.js";

export type InfoView = ReturnType<typeof infoView>;

export async function info(node: NodeProcess): Promise<InfoView> {
  return infoView(await node.info());
}

/** `node ls --format json`, read in-process through the node's socket. */
export async function listNodes(node: NodeProcess): Promise<NodeView[]> {
  const [nodes, self] = await Promise.all([node.client.listNodes(), node.client.info()]);
  return nodes.map((n) => nodeView(n, self.nodeId));
}

/** Waits until `observer`'s `node ls` shows `nodeId` with status ready. */
export function waitUntilReady(observer: NodeProcess, nodeId: string, timeoutMs: number, intervalMs = 100): Promise<NodeView> {
  return waitFor(`node ${nodeId} to be READY in node ls`, async () => (await listNodes(observer)).find((n) => n.id === nodeId && n.status === "ready"), timeoutMs, intervalMs);
}

/** Waits until `observer` reports a leader other than `notNodeId`; returns its info. */
export function waitForLeader(observer: NodeProcess, opts: { timeoutMs: number; notNodeId?: string; intervalMs?: number }): Promise<InfoView> {
  return waitFor(
    "a raft leader",
    async () => {
      const view = await info(observer);
      return view.leaderNodeId !== "" && view.leaderNodeId !== opts.notNodeId ? view : undefined;
    },
    opts.timeoutMs,
    opts.intervalMs ?? 50,
  );
}

/** The node's own ID from its socket, once it has one. */
export function nodeIdOf(node: NodeProcess): Promise<string> {
  return waitFor(`${node.name}'s node ID`, async () => (await info(node)).nodeId || undefined, 10_000);
}

/** The node whose advertised address is `addr`. */
export function nodeByAddr(nodes: readonly NodeProcess[], addr: string): NodeProcess | undefined {
  return nodes.find((n) => n.addr === addr);
}

/** The 1-minute load average (other engineers share this machine), or -1 when unknown. */
export function loadAvg1m(): number {
  try {
    return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return -1;
  }
}

export function expectOk(result: CliResult, what: string): string {
  if (result.code !== 0) throw new ShoalError("INTERNAL", `${what} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  return result.stdout;
}

export interface LocalCluster {
  cluster: ProcessCluster;
  baseDir: string;
  managers: NodeProcess[];
  workers: NodeProcess[];
  /** Node IDs by node name. */
  nodeIds: Map<string, string>;
  /** The unlock key when formed with autolock (never print it). */
  unlockKey?: string;
}

export interface FormClusterOptions {
  managers: number;
  workers: number;
  autolock?: boolean;
  /** Default: a new directory under the OS temp dir, deleted when this process exits. */
  baseDir?: string;
  /** `shoal daemon` flags for every node. Default: none (the real defaults). */
  extraArgs?: string[];
  /** Print each step. */
  log?: (line: string) => void;
}

/**
 * Starts managers + workers, inits the first (with --autolock if asked), joins the others with the
 * join tokens through the real CLI, and waits until `node ls` shows every node READY.
 */
export async function formCluster(opts: FormClusterOptions): Promise<LocalCluster> {
  if (opts.managers < 1) throw new ShoalError("INVALID_ARGUMENT", "a cluster needs at least one manager");
  const log = opts.log ?? (() => undefined);
  const baseDir = opts.baseDir ?? mkdtempSync(join(tmpdir(), "shoal-cluster-"));
  if (opts.baseDir === undefined) removeOnExit(baseDir);
  const cluster = new ProcessCluster(opts.extraArgs ?? [], baseDir);
  const names = [...Array.from({ length: opts.managers }, (_, i) => `manager${i + 1}`), ...Array.from({ length: opts.workers }, (_, i) => `worker${i + 1}`)];
  const nodes = await Promise.all(names.map((name) => cluster.add(name)));
  const managers = nodes.slice(0, opts.managers);
  const workers = nodes.slice(opts.managers);
  const first = managers[0]!;
  log(`started ${nodes.length} daemons under ${baseDir}`);
  expectOk(await first.shoal(["init", ...(opts.autolock === true ? ["--autolock"] : [])]), "init");
  const unlockKey = opts.autolock === true ? expectOk(await first.shoal(["unlock-key", "-q"]), "unlock-key").trim() : undefined;
  const [workerToken, managerToken] = await Promise.all([
    first.shoal(["join-token", "worker", "-q"]).then((r) => expectOk(r, "join-token worker").trim()),
    first.shoal(["join-token", "manager", "-q"]).then((r) => expectOk(r, "join-token manager").trim()),
  ]);
  // Managers one at a time (each is a raft membership change); workers all at once.
  for (const m of managers.slice(1)) {
    expectOk(await m.shoal(["join", "--token", managerToken, first.addr]), `join of ${m.name}`);
    log(`${m.name} joined as a manager`);
  }
  await Promise.all(workers.map(async (w) => expectOk(await w.shoal(["join", "--token", workerToken, first.addr]), `join of ${w.name}`)));
  const nodeIds = new Map<string, string>();
  for (const n of nodes) nodeIds.set(n.name, await nodeIdOf(n));
  for (const n of nodes) await waitUntilReady(first, nodeIds.get(n.name)!, 30_000);
  log(`all ${nodes.length} nodes READY`);
  return { cluster, baseDir, managers, workers, nodeIds, unlockKey };
}
