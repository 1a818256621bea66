// Makes sure the container tools the tests, benchmarks and the demo use are installed: runc,
// umoci, skopeo, docker-registry and busybox (busybox-static). A fresh CI machine has none of
// them; as root we install them with apt (once per process, under a machine-wide lock so that
// parallel test files do not race apt), otherwise we fail with the command to run. Never skip.
import { execFile, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Executable name → the Debian package that provides it. */
export const CONTAINER_TOOLS: Readonly<Record<string, string>> = {
  runc: "runc",
  umoci: "umoci",
  skopeo: "skopeo",
  "docker-registry": "docker-registry",
  busybox: "busybox-static",
};

export const INSTALL_LOCK = "/tmp/shoal-container-tools.lock";

/** The full path of `name` on PATH (plus the sbin directories, where runc lives), if any. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"].filter((d) => d !== "");
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function missingContainerTools(): string[] {
  return Object.keys(CONTAINER_TOOLS).filter((tool) => findExecutable(tool) === undefined);
}

let ensured: Promise<void> | undefined;

/**
 * Resolves when every tool is present, installing the missing ones with apt-get as root.
 * `log` receives one line saying what is installed (tests pass t.diagnostic or console.error).
 */
export function ensureContainerTools(log: (line: string) => void = (line) => console.error(line)): Promise<void> {
  ensured ??= install(log).catch((err: unknown) => {
    ensured = undefined;
    throw err;
  });
  return ensured;
}

/** One install attempt (no caching); `asRoot` is whether apt-get may run (tests pass false). */
export async function install(log: (line: string) => void, asRoot = process.getuid?.() === 0): Promise<void> {
  let missing = missingContainerTools();
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((tool) => CONTAINER_TOOLS[tool]!))];
  const command = `apt-get update && apt-get install -y ${Object.values(CONTAINER_TOOLS).join(" ")}`;
  if (!asRoot) {
    throw new Error(`missing container tools: ${missing.join(", ")} (packages ${packages.join(", ")}); install them as root with: ${command}`);
  }
  log(`# installing container tools (missing: ${missing.join(", ")}): apt-get update && apt-get install -y --no-install-recommends ${Object.values(CONTAINER_TOOLS).join(" ")}`);
  // flock(1) serialises installers across processes; inside, re-check: another one may have finished.
  const script = [
    `missing=0; for t in ${Object.keys(CONTAINER_TOOLS).join(" ")}; do command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || missing=1; done`,
    `if [ "$missing" = 1 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends ${Object.values(CONTAINER_TOOLS).join(" ")}; fi`,
  ].join("\n");
  await new Promise<void>((resolve, reject) => {
    const child = spawn("flock", [INSTALL_LOCK, "sh", "-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`installing container tools failed (exit ${code}); run as root: ${command}\n${output.slice(-2000)}`)),
    );
  });
  missing = missingContainerTools();
  if (missing.length > 0) throw new Error(`container tools still missing after apt-get install: ${missing.join(", ")}; run as root: ${command}`);
  const { stdout } = await execFileAsync("dpkg-query", ["-W", "-f", "${Package} ${Version}\\n", ...Object.values(CONTAINER_TOOLS)]).catch(() => ({ stdout: "" }));
  log(`# installed: ${stdout.trim().split("\n").join(", ")}`);
}

/** Runs the installer from the command line (scripts/test.sh). */
if (import.meta.url === `file://${process.argv[1]}`) {
  ensureContainerTools((line) => console.log(line)).then(
    () => console.log("# container tools present: " + Object.keys(CONTAINER_TOOLS).map((t) => findExecutable(t)).join(" ")),
    (err: unknown) => {
      console.error((err as Error).message);
      process.exit(1);
    },
  );
}
