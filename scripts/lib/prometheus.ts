// A real Prometheus (Debian's `prometheus`, 2.42) for the metrics test: installed as root with apt
// when missing (under the same machine-wide lock as the container tools, so that parallel test files
// never run apt at once), otherwise a failure that gives the command to run; never skipped. Then
// started with a temp config and TSDB, on a free loopback port (it cannot bind port 0), and asked
// through its HTTP API.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { findExecutable, INSTALL_LOCK } from "./container-tools.js";
import { waitFor } from "./wait.js";

const execFileAsync = promisify(execFile);
const PACKAGE = "prometheus";
const INSTALL_COMMAND = `apt-get update && apt-get install -y --no-install-recommends ${PACKAGE}`;

let ensured: Promise<string> | undefined;

/** The path of the `prometheus` binary, installing the Debian package first as root when it is missing. */
export function ensurePrometheus(log: (line: string) => void = (line) => console.error(line)): Promise<string> {
  ensured ??= installPrometheus(log).catch((err: unknown) => {
    ensured = undefined;
    throw err;
  });
  return ensured;
}

/** One install attempt (no caching); `asRoot` is whether apt-get may run (tests pass false). */
export async function installPrometheus(log: (line: string) => void, asRoot = process.getuid?.() === 0): Promise<string> {
  const found = findExecutable("prometheus");
  if (found !== undefined) return found;
  if (!asRoot) throw new Error(`prometheus is not installed (Debian package ${PACKAGE}); install it as root with: ${INSTALL_COMMAND}`);
  log(`# installing prometheus: ${INSTALL_COMMAND}`);
  // flock(1) serialises apt across processes; inside, re-check: another one may have finished.
  const script = [
    `command -v prometheus >/dev/null && exit 0`,
    // The package's scripts would start a system service; a test machine runs it itself.
    `export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends ${PACKAGE}`,
  ].join("\n");
  await new Promise<void>((resolve, reject) => {
    const child = spawn("flock", [INSTALL_LOCK, "sh", "-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`installing prometheus failed (exit ${code}); run as root: ${INSTALL_COMMAND}\n${output.slice(-2000)}`))));
  });
  const path = findExecutable("prometheus");
  if (path === undefined) throw new Error(`prometheus still missing after apt-get install; run as root: ${INSTALL_COMMAND}`);
  const { stdout } = await execFileAsync("dpkg-query", ["-W", "-f", "${Package} ${Version}", PACKAGE]).catch(() => ({ stdout: "" }));
  log(`# installed: ${stdout.trim()}`);
  return path;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface PrometheusTarget {
  job: string;
  /** HOST:PORT of a /metrics endpoint. */
  addr: string;
}

export interface LocalPrometheus {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** The result vector of an instant query (`/api/v1/query`). */
  query(promql: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** What it wrote to stdout and stderr (for a failure message). */
  output(): string;
  stop(): Promise<void>;
}

/** Starts Prometheus scraping `targets` every `scrapeIntervalS` seconds; resolves once its API answers. */
export async function startPrometheus(targets: PrometheusTarget[], opts: { scrapeIntervalS?: number; log?: (line: string) => void } = {}): Promise<LocalPrometheus> {
  const binary = await ensurePrometheus(opts.log);
  const dir = await mkdtemp(join(tmpdir(), "shoal-prometheus-"));
  const interval = opts.scrapeIntervalS ?? 1;
  const config = [
    "global:",
    `  scrape_interval: ${interval}s`,
    `  scrape_timeout: ${interval}s`,
    "scrape_configs:",
    ...targets.flatMap((t) => [`  - job_name: ${JSON.stringify(t.job)}`, "    static_configs:", `      - targets: [${JSON.stringify(t.addr)}]`]),
    "",
  ].join("\n");
  await writeFile(join(dir, "prometheus.yml"), config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    binary,
    [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-20_000));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const stop = async (): Promise<void> => {
    if (!gone) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const query = async (promql: string) => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== "success" || body.data === undefined) throw new Error(`prometheus query ${promql} failed: ${body.error ?? res.status}`);
    return body.data.result;
  };
  try {
    await waitFor("prometheus to answer its API", async () => {
      if (gone) throw new Error(`prometheus exited: ${output.slice(-2000)}`);
      return (await fetch(`${url}/-/ready`)).ok;
    }, 60_000, 200);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, query, output: () => output, stop };
}

/** Installs it from the command line (`node --import tsx scripts/lib/prometheus.ts`). */
if (import.meta.url === `file://${process.argv[1]}`) {
  ensurePrometheus((line) => console.log(line)).then(
    (path) => console.log(`# prometheus present: ${path}`),
    (err: unknown) => {
      console.error((err as Error).message);
      process.exit(1);
    },
  );
}
