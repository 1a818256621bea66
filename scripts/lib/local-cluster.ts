// Runs a real Shoal cluster on 127.0.0.1 as child processes (`node bin/shoal.js daemon`), one data
// directory and one port per node, for the demo and the cluster benchmarks. Children die with us.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { ShoalError } from "../../src/base/errors.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { infoView, nodeView, type NodeView } from "../../src/cli/views.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SHOAL_BIN = path.join(REPO_ROOT, "bin", "shoal.js");
/** How long a daemon may take to open its socket; tsx compiles on first start, and the machine may be loaded. */
const DAEMON_START_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 120_000;

export type InfoView = ReturnType<typeof infoView>;

export interface LocalNode {
  readonly name: string;
  readonly dataDir: string;
  readonly port: number;
  /** `127.0.0.1:<port>`: listen and advertise address. */
  readonly addr: string;
  readonly socketPath: string;
  readonly logFile: string;
  /** Extra `shoal daemon` flags given at start, reused by restart(). */
  readonly extraArgs: readonly string[];
  child: ChildProcess | undefined;
  /** Settles with the exit code or signal when the current child exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** In-process client on the node's socket, for polling without spawning a CLI. */
  client: DaemonClient;
}

export interface ShoalResult {
  code: number;
  stdout: string;
  stderr: string;
}

const liveNodes = new Set<LocalNode>();
const dirsToRemoveOnExit = new Set<string>();
let exitHooksInstalled = false;

/** Deletes `dir` when this process exits, even on Ctrl-C (after the daemons are killed). */
export function removeOnExit(dir: string): void {
  installExitHooks();
  dirsToRemoveOnExit.add(dir);
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // 'exit' handlers run synchronously: SIGKILL is the only thing that surely lands in time.
  process.on("exit", () => {
    for (const node of liveNodes) node.child?.kill("SIGKILL");
    for (const dir of dirsToRemoveOnExit) fs.rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      for (const node of liveNodes) node.child?.kill("SIGKILL");
      process.exit(128 + (os.constants.signals[signal] ?? 1));
    });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Binds port 0 on 127.0.0.1 and returns the port the kernel chose (then frees it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new ShoalError("INTERNAL", "the kernel returned no port for port 0"))));
    });
  });
}

/** Polls `check` until it returns a value other than undefined, or throws TIMEOUT naming `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, opts: { timeoutMs: number; intervalMs?: number }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      throw new ShoalError("TIMEOUT", `timed out after ${opts.timeoutMs} ms waiting for ${what}${lastError === "" ? "" : ` (last error: ${lastError})`}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

function spawnDaemon(node: LocalNode): void {
  const log = fs.openSync(node.logFile, "a");
  const child = spawn(
    process.execPath,
    [SHOAL_BIN, "--data-dir", node.dataDir, "daemon", "--listen-addr", node.addr, ...node.extraArgs],
    { cwd: REPO_ROOT, stdio: ["ignore", log, log], env: { ...process.env, SHOAL_SOCKET: "" } },
  );
  fs.closeSync(log);
  node.child = child;
  node.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  liveNodes.add(node);
}

/** Waits until the node's socket answers `info` (or its process dies first). */
async function waitForSocket(node: LocalNode): Promise<InfoView> {
  let died = false;
  void node.exited.then(() => (died = true));
  return waitFor(
    `${node.name}'s socket to answer info`,
    async () => {
      if (died) throw new ShoalError("UNAVAILABLE", `${node.name}'s daemon exited during start; see ${node.logFile}`);
      return infoView(await node.client.info());
    },
    { timeoutMs: DAEMON_START_TIMEOUT_MS, intervalMs: 100 },
  ).catch((err: unknown) => {
    if (died) throw new ShoalError("UNAVAILABLE", `${node.name}'s daemon exited during start; see ${node.logFile}`);
    throw err;
  });
}

export interface StartDaemonOptions {
  name: string;
  /** The node's data directory is `<baseDir>/<name>`. */
  baseDir: string;
  /** Default: a free port on 127.0.0.1. */
  port?: number;
  /** More `shoal daemon` flags, e.g. ["--raft-tick-ms", "50"]. */
  extraArgs?: string[];
}

/** Spawns `shoal daemon` with its own data dir and port, logging to `<dir>/daemon.log`; resolves once its socket answers. */
export async function startDaemon(opts: StartDaemonOptions): Promise<LocalNode> {
  installExitHooks();
  const dataDir = path.join(opts.baseDir, opts.name);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const port = opts.port ?? (await freePort());
  const socketPath = path.join(dataDir, "shoal.sock");
  const node: LocalNode = {
    name: opts.name,
    dataDir,
    port,
    addr: `127.0.0.1:${port}`,
    socketPath,
    logFile: path.join(dataDir, "daemon.log"),
    extraArgs: opts.extraArgs ?? [],
    child: undefined,
    exited: Promise.resolve({ code: 0, signal: null }),
    client: new DaemonClient(socketPath),
  };
  spawnDaemon(node);
  await waitForSocket(node);
  return node;
}

/** Runs `node bin/shoal.js --socket <node's socket> ...args`, feeding `input` on stdin. Never throws on a non-zero exit. */
export function shoal(node: LocalNode, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<ShoalResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SHOAL_BIN, "--socket", node.socketPath, ...args], {
      cwd: REPO_ROOT,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, SHOAL_SOCKET: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? CLI_TIMEOUT_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal === null ? 1 : 128 + (os.constants.signals[signal] ?? 1)), stdout, stderr });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** Sends `signal` to the node's daemon and waits for it to exit. */
export async function kill(node: LocalNode, signal: "SIGKILL" | "SIGTERM"): Promise<void> {
  const child = node.child;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  // A SIGTERM'd daemon stops gracefully; do not let a stuck one hang the caller.
  const timer = setTimeout(() => child.kill("SIGKILL"), signal === "SIGTERM" ? 10_000 : 5_000);
  await node.exited;
  clearTimeout(timer);
  node.child = undefined;
  liveNodes.delete(node);
}

/** Starts the node's daemon again on the same data dir and port; resolves once its socket answers. */
export async function restart(node: LocalNode): Promise<InfoView> {
  if (node.child !== undefined) throw new ShoalError("FAILED_PRECONDITION", `${node.name} is still running: kill it first`);
  installExitHooks();
  spawnDaemon(node);
  return waitForSocket(node);
}

/** SIGTERMs every daemon this process started and waits for them (SIGKILL after a grace period). */
export async function stopAll(): Promise<void> {
  const nodes = [...liveNodes];
  await Promise.all(nodes.map((n) => kill(n, "SIGTERM")));
  for (const n of nodes) n.client.close();
}

export async function info(node: LocalNode): Promise<InfoView> {
  return infoView(await node.client.info());
}

/** `node ls --format json`, read in-process through the node's socket. */
export async function listNodes(node: LocalNode): Promise<NodeView[]> {
  const [nodes, self] = await Promise.all([node.client.listNodes(), node.client.info()]);
  return nodes.map((n) => nodeView(n, self.nodeId));
}

/** Waits until `observer`'s `node ls` shows `nodeId` with status ready (and, for managers, a manager status). */
export async function waitUntilReady(observer: LocalNode, nodeId: string, opts: { timeoutMs: number; intervalMs?: number }): Promise<NodeView> {
  return waitFor(
    `node ${nodeId} to be READY in node ls`,
    async () => (await listNodes(observer)).find((n) => n.id === nodeId && n.status === "ready"),
    opts,
  );
}

/** Waits until `observer` reports a leader other than `notNodeId`; returns its info. */
export async function waitForLeader(observer: LocalNode, opts: { timeoutMs: number; notNodeId?: string; intervalMs?: number }): Promise<InfoView> {
  return waitFor(
    "a raft leader",
    async () => {
      const view = await info(observer);
      return view.leaderNodeId !== "" && view.leaderNodeId !== opts.notNodeId ? view : undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: opts.intervalMs ?? 50 },
  );
}

export interface LocalCluster {
  baseDir: string;
  managers: LocalNode[];
  workers: LocalNode[];
  /** Node IDs by node name. */
  nodeIds: Map<string, string>;
  /** The unlock key when formed with autolock (never print it). */
  unlockKey?: string;
  /** Deletes the cluster's directories (after stopAll). */
  removeDirs(): void;
}

export interface FormClusterOptions {
  managers: number;
  workers: number;
  autolock?: boolean;
  /** Default: a new directory under the OS temp dir. */
  baseDir?: string;
  /** More `shoal daemon` flags for every node. */
  extraArgs?: string[];
  /** Print each step to stderr. */
  log?: (line: string) => void;
}

function expectOk(result: ShoalResult, what: string): string {
  if (result.code !== 0) throw new ShoalError("INTERNAL", `${what} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  return result.stdout;
}

/** The node's own ID from its socket, once it has one. */
export async function nodeIdOf(node: LocalNode): Promise<string> {
  return waitFor(`${node.name}'s node ID`, async () => (await info(node)).nodeId || undefined, { timeoutMs: 10_000 });
}

/**
 * Starts managers + workers, inits the first (with --autolock if asked), joins the others with the
 * join tokens through the real CLI, and waits until `node ls` shows every node READY.
 */
export async function formCluster(opts: FormClusterOptions): Promise<LocalCluster> {
  if (opts.managers < 1) throw new ShoalError("INVALID_ARGUMENT", "a cluster needs at least one manager");
  const log = opts.log ?? (() => undefined);
  const baseDir = opts.baseDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "shoal-cluster-"));
  if (opts.baseDir === undefined) removeOnExit(baseDir);
  const names = [
    ...Array.from({ length: opts.managers }, (_, i) => `manager${i + 1}`),
    ...Array.from({ length: opts.workers }, (_, i) => `worker${i + 1}`),
  ];
  const nodes = await Promise.all(names.map((name) => startDaemon({ name, baseDir, extraArgs: opts.extraArgs })));
  const managers = nodes.slice(0, opts.managers);
  const workers = nodes.slice(opts.managers);
  const first = managers[0]!;
  log(`started ${nodes.length} daemons under ${baseDir}`);
  expectOk(await shoal(first, ["init", ...(opts.autolock === true ? ["--autolock"] : [])]), "init");
  const unlockKey = opts.autolock === true ? expectOk(await shoal(first, ["unlock-key", "-q"]), "unlock-key").trim() : undefined;
  const [workerToken, managerToken] = await Promise.all([
    shoal(first, ["join-token", "worker", "-q"]).then((r) => expectOk(r, "join-token worker").trim()),
    shoal(first, ["join-token", "manager", "-q"]).then((r) => expectOk(r, "join-token manager").trim()),
  ]);
  // Managers one at a time (each is a raft membership change); workers all at once.
  for (const m of managers.slice(1)) {
    expectOk(await shoal(m, ["join", "--token", managerToken, first.addr]), `join of ${m.name}`);
    log(`${m.name} joined as a manager`);
  }
  await Promise.all(workers.map(async (w) => expectOk(await shoal(w, ["join", "--token", workerToken, first.addr]), `join of ${w.name}`)));
  const nodeIds = new Map<string, string>();
  for (const n of nodes) nodeIds.set(n.name, await nodeIdOf(n));
  for (const n of nodes) await waitUntilReady(first, nodeIds.get(n.name)!, { timeoutMs: 30_000 });
  log(`all ${nodes.length} nodes READY`);
  return {
    baseDir,
    managers,
    workers,
    nodeIds,
    unlockKey,
    removeDirs: () => fs.rmSync(baseDir, { recursive: true, force: true }),
  };
}

/** The cluster's node whose advertised address is `addr`. */
export function nodeByAddr(nodes: readonly LocalNode[], addr: string): LocalNode | undefined {
  return nodes.find((n) => n.addr === addr);
}

/** The 1-minute load average (other engineers share this machine), or -1 when unknown. */
export function loadAvg1m(): number {
  try {
    return Number(fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return -1;
  }
}
