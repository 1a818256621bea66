// End-to-end helpers: real `shoal daemon` child processes on 127.0.0.1 with their own data dirs,
// the CLI run in-process against a node's socket, and direct gRPC clients with a node's own
// certificate (for the tests that attack the listeners).
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { isShoalError } from "../../src/base/errors.js";
import { runCli } from "../../src/cli/program.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import type { InfoResponse } from "../../src/proto/shoal/v1/local.js";
import { ControlClient, type PutValueResponse, type GetValueResponse } from "../../src/proto/shoal/v1/control.js";
import * as grpc from "@grpc/grpc-js";
import { fromGrpcError } from "../../src/transport/errors.js";

export const REPO_ROOT = resolve(import.meta.dirname, "../..");
const CLI_ENTRY = join(REPO_ROOT, "src/cli/main.ts");

/** Fast raft for tests that are not about the defaults: 20 ms ticks, election in 200–400 ms. */
export const FAST_DAEMON_FLAGS = ["--raft-tick-ms", "20", "--raft-election-ticks", "10", "--heartbeat-period-ms", "300"];

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr instanceof Error ? lastErr.message : String(lastErr)})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Waits until `observer`'s node list shows exactly `count` raft voters. */
export function waitForVoters(observer: { client: DaemonClient }, count: number, opts: { what?: string; timeoutMs?: number } = {}): Promise<true> {
  return waitFor(opts.what ?? `${count} voters`, async () => (await observer.client.listNodes()).filter((n) => n.managerStatus?.voter).length === count || undefined, opts.timeoutMs);
}

export class NodeProcess {
  child: ChildProcess | undefined;
  readonly dataDir: string;
  readonly logFile: string;
  private exited: Promise<void> = Promise.resolve();
  private clientCache: DaemonClient | undefined;

  constructor(
    readonly name: string,
    root: string,
    readonly port: number,
    readonly extraFlags: string[],
  ) {
    this.dataDir = join(root, name);
    this.logFile = join(root, `${name}.log`);
  }

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  get socketPath(): string {
    return join(this.dataDir, "shoal.sock");
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the daemon and waits until its socket answers Info. */
  async start(): Promise<void> {
    const log = createWriteStream(this.logFile, { flags: "a" });
    const child = spawn(
      process.execPath,
      ["--import", "tsx", CLI_ENTRY, "--data-dir", this.dataDir, "daemon", "--listen-addr", this.addr, ...this.extraFlags],
      { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SHOAL_SOCKET: "" } },
    );
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    this.child = child;
    this.exited = new Promise((r) => child.once("exit", () => r()));
    this.clientCache?.close();
    this.clientCache = undefined;
    await waitFor(`${this.name} to answer on its socket`, async () => {
      if (!this.running) throw new Error(`${this.name} exited with ${child.exitCode ?? child.signalCode}; see ${this.logFile}`);
      if (!existsSync(this.socketPath)) return undefined;
      return this.info();
    }, 30_000);
  }

  /** SIGKILL (crash) or SIGTERM (clean stop); resolves once the process is gone. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    this.clientCache?.close();
    this.clientCache = undefined;
    if (!this.running) return;
    this.child!.kill(signal);
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), 8000);
    await this.exited;
    clearTimeout(timer);
  }

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

  /** PutValue/GetValue are not CLI commands; they go straight to the Control service on the socket. */
  private controlClient(): ControlClient {
    return new ControlClient(`unix://${this.socketPath}`, grpc.credentials.createInsecure());
  }

  async putValue(key: string, value: Buffer, timeoutMs = 5000, client?: ControlClient): Promise<bigint> {
    const c = client ?? this.controlClient();
    try {
      const res = await new Promise<PutValueResponse>((ok, fail) =>
        c.putValue({ key, value }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) => (err ? fail(fromGrpcError(err)) : ok(r))),
      );
      return res.index;
    } finally {
      if (client === undefined) c.close();
    }
  }

  async getValue(key: string): Promise<Buffer | undefined> {
    const c = this.controlClient();
    try {
      const res = await new Promise<GetValueResponse>((ok, fail) =>
        c.getValue({ key }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? fail(fromGrpcError(err)) : ok(r))),
      );
      return res.found ? Buffer.from(res.value) : undefined;
    } finally {
      c.close();
    }
  }

  newControlClient(): ControlClient {
    return this.controlClient();
  }

  readLog(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  file(relative: string): string {
    return readFileSync(join(this.dataDir, relative), "utf8");
  }
}

export class ProcessCluster {
  readonly root = mkdtempSync(join(tmpdir(), "shoal-e2e-"));
  readonly nodes = new Map<string, NodeProcess>();

  constructor(private readonly flags: string[] = FAST_DAEMON_FLAGS) {}

  async add(name: string, extraFlags: string[] = []): Promise<NodeProcess> {
    const node = new NodeProcess(name, this.root, await freePort(), [...this.flags, ...extraFlags]);
    this.nodes.set(name, node);
    await node.start();
    return node;
  }

  node(name: string): NodeProcess {
    const n = this.nodes.get(name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }

  /** `init` on the first manager; returns the worker and manager tokens. */
  async init(name: string, args: string[] = []): Promise<{ workerToken: string; managerToken: string; unlockKey: string }> {
    const node = this.node(name);
    const res = await node.client.init({ autolock: args.includes("--autolock"), certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
    return { workerToken: res.workerToken, managerToken: res.managerToken, unlockKey: res.unlockKey };
  }

  async join(name: string, token: string, managerAddr: string): Promise<void> {
    const node = this.node(name);
    const result = await node.cli(["join", "--token", token, managerAddr]);
    if (result.code !== 0) throw new Error(`join of ${name} failed (${result.code}): ${result.stderr}`);
  }

  /** The manager that currently leads, by asking each running manager. */
  async leader(): Promise<NodeProcess> {
    return waitFor("a leader", async () => {
      for (const node of this.nodes.values()) {
        if (!node.running) continue;
        try {
          const info = await node.info();
          if (info.managers.some((m) => m.leader && m.nodeId === info.nodeId)) return node;
        } catch {
          // not up
        }
      }
      return undefined;
    }, 15_000);
  }

  /** Waits until `node ls` on `via` shows every listed node READY. */
  async waitReady(via: NodeProcess, count: number, timeoutMs = 20_000): Promise<void> {
    await waitFor(`${count} ready nodes`, async () => {
      const nodes = await via.client.listNodes();
      return nodes.length === count && nodes.every((n) => n.status?.state === 2) ? true : undefined;
    }, timeoutMs, 200);
  }

  logs(): string {
    return [...this.nodes.values()].map((n) => n.readLog()).join("\n");
  }

  async close(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.stop("SIGKILL")));
    if (process.env["SHOAL_KEEP_E2E"] === undefined) rmSync(this.root, { recursive: true, force: true });
  }
}

/** Every regular file under a directory (recursively). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const st = statSync(path);
    if (st.isDirectory()) out.push(...filesUnder(path));
    else if (st.isFile()) out.push(path);
  }
  return out;
}

export function expectCode(err: unknown, code: string): boolean {
  if (!isShoalError(err)) throw err;
  if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`);
  return true;
}
