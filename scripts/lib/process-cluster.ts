// Real `shoal daemon` child processes on 127.0.0.1, one data directory and one port each, for the
// end-to-end tests, the benchmarks, the demo and the chaos run. Each daemon logs straight to its own
// file; every daemon this process started is SIGKILLed when it exits, even on Ctrl-C.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { constants as osConstants, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../src/base/errors.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { runCli } from "../../src/cli/program.js";
import { ControlClient, type GetValueResponse, type PutValueResponse } from "../../src/proto/shoal/v1/control.js";
import type { InfoResponse } from "../../src/proto/shoal/v1/local.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { waitFor } from "./wait.js";

export const REPO_ROOT = resolve(import.meta.dirname, "../..");
export const SHOAL_BIN = join(REPO_ROOT, "bin", "shoal.js");
/** Fast raft for runs that are not about the defaults: 20 ms ticks, election in 200–400 ms. */
export const FAST_DAEMON_FLAGS = ["--raft-tick-ms", "20", "--raft-election-ticks", "10", "--heartbeat-period-ms", "300"];
/** How long a daemon may take to open its socket; tsx compiles on first start, and the machine may be loaded. */
const DAEMON_START_TIMEOUT_MS = 30_000;
/**
 * A SIGTERMed daemon that has not exited by then is SIGKILLed. Longer than a task's default stop
 * grace period (10 s), so that a clean stop of a worker lets its agent stop its containers
 * (SIGTERM, grace, SIGKILL) before the harness kills the daemon.
 */
const STOP_GRACE_MS = 15_000;
const CLI_TIMEOUT_MS = 120_000;

const liveChildren = new Set<ChildProcess>();
const dirsToRemoveOnExit = new Set<string>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // 'exit' handlers run synchronously: SIGKILL is the only thing that surely lands in time.
  process.on("exit", () => {
    for (const child of liveChildren) child.kill("SIGKILL");
    for (const dir of dirsToRemoveOnExit) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      for (const child of liveChildren) child.kill("SIGKILL");
      process.exit(128 + (osConstants.signals[signal] ?? 1));
    });
  }
}

/** Deletes `dir` when this process exits, even on Ctrl-C (after the daemons are killed). */
export function removeOnExit(dir: string): void {
  installExitHooks();
  dirsToRemoveOnExit.add(dir);
}

/** Undoes removeOnExit (a failed run keeps its directory). */
export function keepOnExit(dir: string): void {
  dirsToRemoveOnExit.delete(dir);
}

/** Binds port 0 on 127.0.0.1 and returns the port the kernel chose (then frees it). */
/**
 * Ports handed out below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
 * 32768-60999 here). A port is handed out now and bound later, when the daemon inits or joins; one
 * from the ephemeral range could meanwhile become the local port of an outgoing connection (P2P
 * peers open many), and the daemon then failed with EADDRINUSE (seen in CI: "join of m3 failed:
 * cannot listen on 127.0.0.1:38535"). Below the range only another listener can take it.
 */
const PORT_LOW = 20000;
const PORT_HIGH = 32767;
const handedOut = new Set<number>();

function tryListen(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolveFree(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolveFree(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW + 1));
    if (handedOut.has(port)) continue;
    if (await tryListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new ShoalError("INTERNAL", `no free port between ${PORT_LOW} and ${PORT_HIGH} after 200 tries`);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One `shoal daemon` process: data dir `<root>/<name>`, log `<root>/<name>.log`, fixed port across restarts. */
export class NodeProcess {
  child: ChildProcess | undefined;
  readonly dataDir: string;
  readonly logFile: string;
  /** Settles with the exit code or signal when the current child exits. */
  exited: Promise<ExitStatus> = Promise.resolve({ code: 0, signal: null });
  private clientCache: DaemonClient | undefined;
  private paused = false;
  /** The script run with node for the next start (default bin/shoal.js; a test may give a launcher of its own). */
  bin: string = SHOAL_BIN;
  /** More `shoal daemon` flags for the next start, after extraFlags (a restart with other options). */
  restartFlags: string[] = [];
  /** More environment for the next start. */
  env: Record<string, string> = {};

  constructor(
    readonly name: string,
    root: string,
    readonly port: number,
    readonly extraFlags: readonly string[],
  ) {
    this.dataDir = join(root, name);
    this.logFile = join(root, `${name}.log`);
  }

  /** `127.0.0.1:<port>`: listen and advertise address. */
  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  get socketPath(): string {
    return join(this.dataDir, "shoal.sock");
  }

  /** How the daemon ended ("running" while it runs): for a failed test's diagnostics. */
  get exitStatus(): string {
    if (this.child === undefined) return "not started";
    if (this.child.exitCode === null && this.child.signalCode === null) return "running";
    return `exited with ${this.child.exitCode ?? this.child.signalCode}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get isPaused(): boolean {
    return this.paused && this.running;
  }

  /** Spawns the daemon and waits until its socket answers Info (or the process dies first). */
  async start(timeoutMs = DAEMON_START_TIMEOUT_MS): Promise<InfoResponse> {
    if (this.running) throw new ShoalError("FAILED_PRECONDITION", `${this.name} is still running: stop it first`);
    installExitHooks();
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    const log = openSync(this.logFile, "a");
    // Every node of a local cluster runs on this machine: each reports its own name as its hostname.
    const hostname = this.extraFlags.includes("--hostname") ? [] : ["--hostname", this.name];
    const child = spawn(process.execPath, [this.bin, "--data-dir", this.dataDir, "daemon", "--listen-addr", this.addr, ...hostname, ...this.extraFlags, ...this.restartFlags], {
      cwd: REPO_ROOT,
      stdio: ["ignore", log, log],
      env: { ...process.env, SHOAL_SOCKET: "", ...this.env },
    });
    closeSync(log);
    this.child = child;
    this.paused = false;
    liveChildren.add(child);
    this.exited = new Promise((done) =>
      child.once("exit", (code, signal) => {
        liveChildren.delete(child);
        done({ code, signal });
      }),
    );
    this.clientCache?.close();
    this.clientCache = undefined;
    return waitFor(
      `${this.name} to answer on its socket`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new ShoalError("UNAVAILABLE", `${this.name}'s daemon exited with ${child.exitCode ?? child.signalCode} during start; see ${this.logFile}`);
        }
        if (!existsSync(this.socketPath)) return undefined;
        try {
          return await this.info();
        } catch (err) {
          // A socket file left by a SIGKILLed predecessor refuses; a fresh channel skips grpc's reconnect backoff.
          this.clientCache?.close();
          this.clientCache = undefined;
          throw err;
        }
      },
      timeoutMs,
      100,
    ).catch((err: unknown) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new ShoalError("UNAVAILABLE", `${this.name}'s daemon exited with ${child.exitCode ?? child.signalCode} during start; see ${this.logFile}`);
      }
      throw err;
    });
  }

  /** SIGKILL (crash) or SIGTERM (clean stop, SIGKILL after a grace period); resolves once the process is gone. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<ExitStatus | undefined> {
    this.clientCache?.close();
    this.clientCache = undefined;
    const child = this.child;
    if (child === undefined || !this.running) return undefined;
    child.kill(signal);
    // A stopped process only acts on SIGTERM once it runs again.
    if (this.paused && signal !== "SIGKILL") child.kill("SIGCONT");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    const status = await this.exited;
    clearTimeout(timer);
    this.paused = false;
    return status;
  }

  /** SIGSTOP: the process freezes with its sockets open (a hung node, as a long GC pause or a VM stall looks to peers). */
  pause(): void {
    if (!this.running) throw new ShoalError("FAILED_PRECONDITION", `${this.name} is not running`);
    this.child!.kill("SIGSTOP");
    this.paused = true;
  }

  /** SIGCONT after pause(). */
  resume(): void {
    if (!this.running) return;
    this.child!.kill("SIGCONT");
    this.paused = false;
  }

  /** In-process client on the node's socket (no CLI spawned). */
  get client(): DaemonClient {
    this.clientCache ??= new DaemonClient(this.socketPath);
    return this.clientCache;
  }

  info(): Promise<InfoResponse> {
    return this.client.info();
  }

  /** Runs `shoal ARGS` in-process against this node's socket. */
  async cli(args: string[], stdin = ""): Promise<CliResult> {
    let stdout = "";
    let stderr = "";
    const code = await runCli(["--socket", this.socketPath, ...args], {
      stdout: (t) => (stdout += t),
      stderr: (t) => (stderr += t),
      stdin: Readable.from([stdin]),
      env: {},
    });
    return { code, stdout, stderr };
  }

  /** Runs the real `shoal` binary as a child process against this node's socket, feeding `input` on stdin. Never throws on a non-zero exit. */
  shoal(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
    return new Promise((resolveResult, reject) => {
      const child = spawn(process.execPath, [SHOAL_BIN, "--socket", this.socketPath, ...args], {
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
        resolveResult({ code: code ?? (signal === null ? 1 : 128 + (osConstants.signals[signal] ?? 1)), stdout, stderr });
      });
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts.input ?? "");
    });
  }

  /** A Control client on the socket (PutValue/GetValue are not CLI commands). Close it when done. */
  newControlClient(): ControlClient {
    return new ControlClient(`unix://${this.socketPath}`, grpc.credentials.createInsecure());
  }

  async putValue(key: string, value: Buffer, timeoutMs = 5000, client?: ControlClient): Promise<bigint> {
    const c = client ?? this.newControlClient();
    try {
      const res = await new Promise<PutValueResponse>((ok, fail) =>
        c.putValue({ key, value }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) => (err ? fail(fromGrpcError(err)) : ok(r))),
      );
      return res.index;
    } finally {
      if (client === undefined) c.close();
    }
  }

  async getValue(key: string, timeoutMs = 5000): Promise<Buffer | undefined> {
    const c = this.newControlClient();
    try {
      const res = await new Promise<GetValueResponse>((ok, fail) =>
        c.getValue({ key }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) => (err ? fail(fromGrpcError(err)) : ok(r))),
      );
      return res.found ? Buffer.from(res.value) : undefined;
    } finally {
      c.close();
    }
  }

  /** IDs of the containers in this node's runc state root (none without runc). */
  containers(): string[] {
    const listed = spawnSync("runc", ["--root", join(this.dataDir, "worker", "runc"), "list", "-q"], { encoding: "utf8" });
    return (listed.stdout ?? "").split("\n").filter((l) => l !== "");
  }

  /** Deletes the containers a SIGKILLed agent left running (a restarted agent would have). */
  deleteContainers(): void {
    for (const id of this.containers()) spawnSync("runc", ["--root", join(this.dataDir, "worker", "runc"), "delete", "-f", id]);
  }

  readLog(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  /** A file of the data dir, as text. */
  file(relative: string): string {
    return readFileSync(join(this.dataDir, relative), "utf8");
  }
}

/** Waits until `observer`'s node list shows exactly `count` raft voters. */
export function waitForVoters(observer: { client: DaemonClient }, count: number, opts: { what?: string; timeoutMs?: number } = {}): Promise<true> {
  return waitFor(opts.what ?? `${count} voters`, async () => (await observer.client.listNodes()).filter((n) => n.managerStatus?.voter).length === count || undefined, opts.timeoutMs);
}

/** Nodes under one temp root; `close` SIGKILLs them and deletes the root (kept with SHOAL_KEEP_E2E set, or `keep`). */
export class ProcessCluster {
  readonly root: string;
  readonly nodes = new Map<string, NodeProcess>();

  /** `flags`: `shoal daemon` flags for every node. `root`: default a new directory under the OS temp dir. */
  constructor(
    private readonly flags: readonly string[] = FAST_DAEMON_FLAGS,
    root?: string,
  ) {
    this.root = root ?? mkdtempSync(join(tmpdir(), "shoal-e2e-"));
    mkdirSync(this.root, { recursive: true });
  }

  /** Creates and starts a node. */
  async add(name: string, extraFlags: string[] = []): Promise<NodeProcess> {
    const node = new NodeProcess(name, this.root, await freePort(), [...this.flags, ...extraFlags]);
    this.nodes.set(name, node);
    await node.start();
    return node;
  }

  node(name: string): NodeProcess {
    const n = this.nodes.get(name);
    if (n === undefined) throw new ShoalError("NOT_FOUND", `no node ${name}`);
    return n;
  }

  /** `init` on the first manager; returns the worker and manager tokens (and the unlock key with --autolock). */
  async init(name: string, args: string[] = []): Promise<{ workerToken: string; managerToken: string; unlockKey: string }> {
    const node = this.node(name);
    const res = await node.client.init({ autolock: args.includes("--autolock"), certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
    return { workerToken: res.workerToken, managerToken: res.managerToken, unlockKey: res.unlockKey };
  }

  /** `shoal join` (in-process CLI) of `name` through `managerAddr`. */
  async join(name: string, token: string, managerAddr: string): Promise<void> {
    const node = this.node(name);
    const result = await node.cli(["join", "--token", token, managerAddr]);
    if (result.code !== 0) throw new ShoalError("INTERNAL", `join of ${name} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }

  /** The manager that currently leads, by asking each running manager. */
  async leader(timeoutMs = 15_000): Promise<NodeProcess> {
    return waitFor(
      "a leader",
      async () => {
        for (const node of this.nodes.values()) {
          if (!node.running || node.isPaused) continue;
          try {
            const info = await node.info();
            if (info.managers.some((m) => m.leader && m.nodeId === info.nodeId)) return node;
          } catch {
            // not up
          }
        }
        return undefined;
      },
      timeoutMs,
    );
  }

  /** Waits until `node ls` on `via` shows `count` nodes, all READY. */
  async waitReady(via: NodeProcess, count: number, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      `${count} ready nodes`,
      async () => {
        const nodes = await via.client.listNodes();
        return nodes.length === count && nodes.every((n) => n.status?.state === 2) ? true : undefined;
      },
      timeoutMs,
      200,
    );
  }

  logs(): string {
    return [...this.nodes.values()].map((n) => n.readLog()).join("\n");
  }

  /** SIGTERMs every running node and waits (SIGKILL after a grace period). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.stop("SIGTERM")));
  }

  /** SIGKILLs every node and deletes the root unless `keep` or SHOAL_KEEP_E2E. */
  /** SIGKILLs every node and deletes the containers their agents left (before the runc state roots go). */
  async close(opts: { keep?: boolean } = {}): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.stop("SIGKILL")));
    for (const n of this.nodes.values()) n.deleteContainers();
    if (opts.keep !== true && process.env["SHOAL_KEEP_E2E"] === undefined) rmSync(this.root, { recursive: true, force: true });
  }
}
