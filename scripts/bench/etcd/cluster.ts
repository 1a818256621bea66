// Starts a throwaway local etcd cluster (Debian's etcd-server 3.4) as child processes on 127.0.0.1,
// with mutual TLS on client and peer URLs from a PKI made by the openssl CLI, for the write benchmark's
// baseline. Everything it starts is SIGKILLed and its directories removed on stop() or process exit.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { ShoalError } from "../../../src/base/errors.js";

export const ETCD_INSTALL_HINT = "etcd not installed: apt-get install -y etcd-server";

export interface EtcdClusterOptions {
  /** Number of members (1..7); the benchmark uses 3. */
  members: number;
  /** The cluster's directory is made inside this one (default: the OS temp dir); only that inner directory is removed. */
  baseDir?: string;
  /** Mutual TLS on client and peer URLs. false gives plain http (for comparison with etcd's own published figures only). */
  tls: boolean;
  /** Bounded wait for every member to report healthy. */
  startupTimeoutMs?: number;
  /** etcd binary; default /usr/bin/etcd, then `etcd` on PATH. */
  etcdBinary?: string;
}

export interface EtcdCluster {
  /** Client URLs, one per member: `https://127.0.0.1:<port>` (or http when tls is false). */
  endpoints: string[];
  tls: boolean;
  caPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  /** The directory holding the PKI, data dirs and member logs (removed by stop()). */
  dir: string;
  /** Process IDs of the members (for CPU accounting). */
  pids: (number | undefined)[];
  /** Fetches one member's Prometheus /metrics text (index into endpoints). */
  metrics(memberIndex: number): Promise<string>;
  /** SIGKILLs every member and removes dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** The etcd binary to run, or undefined when etcd is not installed. */
export function findEtcdBinary(preferred?: string): string | undefined {
  const candidates = preferred !== undefined ? [preferred] : ["/usr/bin/etcd", ...(process.env["PATH"] ?? "").split(":").filter((d) => d !== "").map((d) => path.join(d, "etcd"))];
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next
    }
  }
  return undefined;
}

/** `3.4.23` from `etcd --version`. */
export function etcdVersion(binary: string): string {
  const out = execFileSync(binary, ["--version"], { encoding: "utf8", timeout: 10_000 });
  const match = /etcd Version:\s*(\S+)/.exec(out);
  if (match === null) throw new ShoalError("INTERNAL", `could not read the version from '${binary} --version'; is it etcd?`);
  return match[1]!;
}

// ---- PKI -------------------------------------------------------------------------------------

interface Pki {
  caCertFile: string;
  caPem: string;
  memberCertFiles: { certFile: string; keyFile: string }[];
  clientCertPem: string;
  clientKeyPem: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? "";
    throw new ShoalError("INTERNAL", `openssl ${args[0]} failed (${stderr.slice(0, 300)}); is the openssl CLI installed?`, { cause: err });
  }
}

/** A fresh EC P-256 CA, one server+peer certificate per member, and one client certificate. */
function makePki(dir: string, members: number): Pki {
  fs.mkdirSync(dir, { mode: 0o700 });
  openssl(
    ["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
      "-subj", "/CN=etcd-bench-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    dir,
  );
  // Members use one certificate for both roles: it serves client and peer URLs and dials peers.
  fs.writeFileSync(
    path.join(dir, "ext.cnf"),
    [
      "[member]",
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth,clientAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "[client]",
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=clientAuth",
      "",
    ].join("\n"),
  );
  const issue = (name: string, section: "member" | "client"): { certFile: string; keyFile: string } => {
    openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`], dir);
    openssl(
      ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", `0x${randomBytes(16).toString("hex")}`, "-days", "2",
        "-extfile", "ext.cnf", "-extensions", section, "-out", `${name}.crt`],
      dir,
    );
    return { certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) };
  };
  const memberCertFiles = Array.from({ length: members }, (_, i) => issue(`member${i}`, "member"));
  const client = issue("client", "client");
  return {
    caCertFile: path.join(dir, "ca.crt"),
    caPem: fs.readFileSync(path.join(dir, "ca.crt"), "utf8"),
    memberCertFiles,
    clientCertPem: fs.readFileSync(client.certFile, "utf8"),
    clientKeyPem: fs.readFileSync(client.keyFile, "utf8"),
  };
}

// ---- ports -----------------------------------------------------------------------------------

/** `count` distinct free ports on 127.0.0.1: all are held open together so none repeats, then released. */
async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
      ports.push((server.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

// ---- process cleanup ---------------------------------------------------------------------------

interface Running {
  children: ChildProcess[];
  /** Per child: why it could not be spawned, if it could not. */
  spawnErrors: (string | undefined)[];
  dir: string;
}

const running = new Set<Running>();
let exitHooksInstalled = false;

function killAndRemoveSync(r: Running): void {
  for (const child of r.children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  fs.rmSync(r.dir, { recursive: true, force: true });
}

/** A benchmark killed by Ctrl-C or an uncaught error must not leave etcd members running. */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", () => {
    for (const r of running) killAndRemoveSync(r);
    running.clear();
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      for (const r of running) killAndRemoveSync(r);
      running.clear();
      process.exit(128 + (os.constants.signals[signal] ?? 0));
    });
  }
}

// ---- HTTP(S) probes ----------------------------------------------------------------------------

interface ProbeTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

function httpGet(url: string, tls: ProbeTls | undefined, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    };
    const req =
      tls !== undefined
        ? https.get(url, { ca: tls.caPem, cert: tls.certPem, key: tls.keyPem, servername: "localhost", agent: false, timeout: timeoutMs }, onResponse)
        : http.get(url, { agent: false, timeout: timeoutMs }, onResponse);
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

function tailOf(file: string, maxChars: number): string {
  try {
    const text = fs.readFileSync(file, "utf8");
    return text.slice(Math.max(0, text.length - maxChars));
  } catch {
    return "(no log)";
  }
}

// ---- the cluster -------------------------------------------------------------------------------

export async function startEtcdCluster(options: EtcdClusterOptions): Promise<EtcdCluster> {
  const { members, tls } = options;
  const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
  if (!Number.isInteger(members) || members < 1 || members > 7) {
    throw new ShoalError("INVALID_ARGUMENT", `members must be an integer in 1..7, got ${members}`);
  }
  const binary = findEtcdBinary(options.etcdBinary);
  if (binary === undefined) throw new ShoalError("FAILED_PRECONDITION", ETCD_INSTALL_HINT);

  const baseDir = options.baseDir ?? os.tmpdir();
  fs.mkdirSync(baseDir, { recursive: true });
  const dir = fs.mkdtempSync(path.join(baseDir, "shoal-etcd-bench-"));
  const state: Running = { children: [], spawnErrors: [], dir };
  installExitHooks();
  running.add(state);

  try {
    const pki = makePki(path.join(dir, "pki"), members);
    const ports = await freePorts(2 * members);
    const scheme = tls ? "https" : "http";
    const clientUrls = Array.from({ length: members }, (_, i) => `${scheme}://127.0.0.1:${ports[2 * i]!}`);
    const peerUrls = Array.from({ length: members }, (_, i) => `${scheme}://127.0.0.1:${ports[2 * i + 1]!}`);
    const initialCluster = peerUrls.map((u, i) => `member${i}=${u}`).join(",");
    const clusterToken = `shoal-bench-${randomBytes(6).toString("hex")}`;
    const logFiles: string[] = [];

    for (let i = 0; i < members; i++) {
      const certs = pki.memberCertFiles[i]!;
      const args = [
        `--name=member${i}`,
        `--data-dir=${path.join(dir, `member${i}.etcd`)}`,
        `--listen-client-urls=${clientUrls[i]!}`,
        `--advertise-client-urls=${clientUrls[i]!}`,
        `--listen-peer-urls=${peerUrls[i]!}`,
        `--initial-advertise-peer-urls=${peerUrls[i]!}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${clusterToken}`,
        "--initial-cluster-state=new",
        "--logger=zap",
        "--log-outputs=stderr",
        // Defaults kept on purpose: heartbeat 100 ms, election 1000 ms, WAL fsync on every commit.
        ...(tls
          ? [
              "--client-cert-auth",
              `--trusted-ca-file=${pki.caCertFile}`,
              `--cert-file=${certs.certFile}`,
              `--key-file=${certs.keyFile}`,
              "--peer-client-cert-auth",
              `--peer-trusted-ca-file=${pki.caCertFile}`,
              `--peer-cert-file=${certs.certFile}`,
              `--peer-key-file=${certs.keyFile}`,
            ]
          : []),
      ];
      const logFile = path.join(dir, `member${i}.log`);
      logFiles.push(logFile);
      const logFd = fs.openSync(logFile, "a");
      try {
        // Scrub ETCD_* variables so a developer's environment cannot change the configuration.
        const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_")));
        const child = spawn(binary, args, { stdio: ["ignore", logFd, logFd], env });
        const index = state.children.length;
        state.children.push(child);
        state.spawnErrors.push(undefined);
        child.on("error", (err) => {
          state.spawnErrors[index] = err.message;
        });
      } finally {
        fs.closeSync(logFd);
      }
    }

    const probeTls = tls ? { caPem: pki.caPem, certPem: pki.clientCertPem, keyPem: pki.clientKeyPem } : undefined;
    const deadlineMs = Date.now() + startupTimeoutMs;
    const healthy = new Array<boolean>(members).fill(false);
    let lastProblem = "no answer yet";
    while (healthy.some((h) => !h)) {
      for (const [i, child] of state.children.entries()) {
        const spawnError = state.spawnErrors[i];
        if (spawnError !== undefined) throw new ShoalError("UNAVAILABLE", `could not start etcd member${i} (${binary}): ${spawnError}`);
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new ShoalError(
            "UNAVAILABLE",
            `etcd member${i} exited during startup (code ${child.exitCode ?? child.signalCode}); its log ends with:\n${tailOf(logFiles[i]!, 1500)}`,
          );
        }
      }
      await Promise.all(
        clientUrls.map(async (url, i) => {
          if (healthy[i]) return;
          try {
            const { status, body } = await httpGet(`${url}/health`, probeTls, 1000);
            if (status === 200 && /"health"\s*:\s*"true"/.test(body)) healthy[i] = true;
            else lastProblem = `member${i} /health answered ${status} ${body.trim().slice(0, 200)}`;
          } catch (err) {
            lastProblem = `member${i} /health: ${err instanceof Error ? err.message : String(err)}`;
          }
        }),
      );
      if (healthy.every((h) => h)) break;
      if (Date.now() > deadlineMs) {
        throw new ShoalError(
          "TIMEOUT",
          `etcd cluster of ${members} was not healthy within ${startupTimeoutMs} ms (last: ${lastProblem}); member0's log ends with:\n${tailOf(logFiles[0]!, 1500)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    let stopped = false;
    return {
      endpoints: clientUrls,
      tls,
      caPem: pki.caPem,
      clientCertPem: pki.clientCertPem,
      clientKeyPem: pki.clientKeyPem,
      dir,
      pids: state.children.map((c) => c.pid),
      metrics: async (memberIndex: number): Promise<string> => {
        const url = clientUrls[memberIndex];
        if (url === undefined) throw new ShoalError("INVALID_ARGUMENT", `no member ${memberIndex}; the cluster has ${members}`);
        const { status, body } = await httpGet(`${url}/metrics`, probeTls, 5000);
        if (status !== 200) throw new ShoalError("UNAVAILABLE", `member${memberIndex} /metrics answered ${status}`);
        return body;
      },
      stop: async (): Promise<void> => {
        if (stopped) return;
        stopped = true;
        await killAndWait(state);
        running.delete(state);
      },
    };
  } catch (err) {
    await killAndWait(state);
    running.delete(state);
    throw err;
  }
}

/** SIGKILL, wait (bounded) for the exits so the data dirs are no longer written to, then remove the directory. */
async function killAndWait(state: Running): Promise<void> {
  const exits = state.children.map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(resolve, 5000);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
      }),
  );
  for (const child of state.children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  await Promise.all(exits);
  fs.rmSync(state.dir, { recursive: true, force: true });
}
