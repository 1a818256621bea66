// The runc executor: one OCI bundle per task under `<worker dir>/tasks/<task ID>/` (a rootfs from
// the ImageProvider, config.json from oci-config.ts), run with `runc run` in the foreground so that
// its exit code is the task's (CONTAINERS.md: `runc state` has none). Its own runc state root keeps
// this agent's containers apart from any other's on the machine. Stop: `runc kill TERM`, the grace,
// `runc kill KILL`. Remove: `runc delete -f`, the bundle, and the cgroup directories runc leaves.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { chmod, mkdir, readFile, readdir, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { ShoalError, isShoalError } from "../../../base/errors.js";
import type { Clock } from "../../../base/clock.js";
import { signalExitCode, type ExecTask, type Executor, type ExitStatus, type ImageConfig, type ImageProvider, type PreparedTask, type StartedTask, type TaskRecord } from "../executor.js";
import { buildOciConfig, resolveUser } from "./oci-config.js";

const execFileAsync = promisify(execFile);
const CGROUP_ROOT = "/sys/fs/cgroup";
const RUNC_CALL_TIMEOUT_MS = 30_000;
const STATE_POLL_MS = 20;
/** The root filesystem is ready before the start: creating and starting the container takes well under a second. */
const START_TIMEOUT_MS = 15_000;

export interface RuncExecutorOptions {
  /** `<worker dir>`: bundles go in `tasks/`, runc's state in `runc/`. */
  workerDir: string;
  images: ImageProvider;
  clock: Clock;
  logger: Logger;
  /** First component of every task's absolute cgroup path (`/<parent>/<task ID>`). */
  cgroupParent?: string;
  runcPath?: string;
}

interface Prepared {
  image: ImageConfig;
  uid: number;
  gid: number;
  additionalGids: number[];
}

interface Running {
  exited: Promise<ExitStatus>;
  done: boolean;
}

export class RuncExecutor implements Executor {
  readonly name = "runc" as const;
  private readonly prepared = new Map<string, Prepared>();
  private readonly running = new Map<string, Running>();
  private readonly runc: string;
  private readonly stateRoot: string;
  private readonly cgroupParent: string;

  constructor(private readonly opts: RuncExecutorOptions) {
    this.runc = opts.runcPath ?? "runc";
    this.stateRoot = join(opts.workerDir, "runc");
    this.cgroupParent = opts.cgroupParent ?? "shoal";
    if (!/^[A-Za-z0-9_.-]+$/.test(this.cgroupParent)) throw new ShoalError("INVALID_ARGUMENT", `cgroup parent "${this.cgroupParent}" must be one plain name`);
  }

  bundleDir(taskId: string): string {
    return join(this.opts.workerDir, "tasks", taskId);
  }

  cgroupsPath(taskId: string): string {
    return `/${this.cgroupParent}/${taskId}`;
  }

  async prepare(task: ExecTask): Promise<PreparedTask> {
    const { spec } = task;
    if (spec.image === "" || spec.imageDigest === "") throw new ShoalError("INVALID_ARGUMENT", "the task has no resolved image digest to run");
    const bundle = this.bundleDir(task.id);
    await rm(bundle, { recursive: true, force: true });
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    const rootfs = join(bundle, "rootfs");
    const image = await this.opts.images.prepareRootfs({
      image: spec.image,
      digest: spec.imageDigest,
      rootfsDir: rootfs,
      ...(task.progress !== undefined ? { progress: task.progress } : {}),
      ...(task.signal !== undefined ? { signal: task.signal } : {}),
    });
    // runc gives the /tmp tmpfs the mode of its mount point: one it has to create would be 0755.
    await mkdir(join(rootfs, "tmp"), { mode: 0o1777 }).then(
      () => chmod(join(rootfs, "tmp"), 0o1777),
      () => undefined,
    );
    const user = resolveUser(spec.user !== "" ? spec.user : image.user, await readOptional(join(rootfs, "etc/passwd")), await readOptional(join(rootfs, "etc/group")));
    // Builds the config once now, so a bad command or capability rejects the task before it starts.
    buildOciConfig({ taskId: task.id, spec, image, rootfsPath: rootfs, cgroupsPath: this.cgroupsPath(task.id), secretsDir: undefined, ...user });
    this.prepared.set(task.id, { image, ...user });
    return { uid: user.uid, gid: user.gid };
  }

  async start(task: ExecTask, secretsDir: string | undefined): Promise<StartedTask> {
    const prepared = this.prepared.get(task.id);
    if (prepared === undefined) throw new ShoalError("FAILED_PRECONDITION", `task ${task.id} was not prepared`);
    const bundle = this.bundleDir(task.id);
    const config = buildOciConfig({
      taskId: task.id,
      spec: task.spec,
      image: prepared.image,
      rootfsPath: join(bundle, "rootfs"),
      cgroupsPath: this.cgroupsPath(task.id),
      secretsDir,
      uid: prepared.uid,
      gid: prepared.gid,
      additionalGids: prepared.additionalGids,
    });
    await writeFile(join(bundle, "config.json"), JSON.stringify(config, null, 2), { mode: 0o600 });
    await mkdir(this.stateRoot, { recursive: true, mode: 0o700 });
    const child = spawn(this.runc, ["--root", this.stateRoot, "run", "--bundle", bundle, task.id], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<ExitStatus>((resolve) => {
      child.once("error", (err) => resolve({ exitCode: 127, message: `cannot run runc: ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
      child.once("exit", (code, signal) => {
        const exitCode = code ?? signalExitCode(signal);
        resolve({ exitCode, message: exitCode === 137 ? "killed (SIGKILL or out of memory)" : `exited with code ${exitCode}` });
      });
    });
    child.stdout.on("data", (chunk: Buffer) => task.output?.("stdout", chunk));
    child.stderr.on("data", (chunk: Buffer) => task.output?.("stderr", chunk));
    const entry: Running = { exited, done: false };
    void exited.then(() => (entry.done = true));
    this.running.set(task.id, entry);
    // RUNNING means the container runs: wait for runc to have created and started it (or for it to end).
    const pid = await this.waitUntilStarted(task.id, entry, child);
    return { pid, record: { containerId: task.id, bundle }, exited };
  }

  /**
   * Polls `runc state` until the container runs (its init's PID) or `runc run` ended (0). A container
   * that is not running within START_TIMEOUT_MS is killed and the start fails, rather than the task
   * sitting in STARTING with no reason given.
   */
  private async waitUntilStarted(taskId: string, entry: Running, child: ChildProcess): Promise<number> {
    const deadlineMs = this.opts.clock.nowMs() + START_TIMEOUT_MS;
    let last = "not created";
    while (!entry.done) {
      try {
        const { stdout } = await this.call(["state", taskId]);
        const state = JSON.parse(stdout) as { status?: string; pid?: number };
        if (state.status === "running" || state.status === "stopped") return state.pid ?? 0;
        last = state.status ?? "unknown";
      } catch {
        // not created yet
      }
      if (this.opts.clock.nowMs() >= deadlineMs) {
        child.kill("SIGKILL");
        await this.call(["delete", "--force", taskId]).catch(() => undefined);
        await entry.exited;
        throw new ShoalError("TIMEOUT", `runc did not start the container within ${START_TIMEOUT_MS / 1000} s (its state stayed "${last}")`);
      }
      await Promise.race([this.opts.clock.sleep(STATE_POLL_MS), entry.exited]);
    }
    return 0;
  }

  async stop(taskId: string, graceMs: number): Promise<void> {
    const entry = this.running.get(taskId);
    if (entry === undefined || entry.done) return;
    await this.kill(taskId, "TERM");
    let graceOver = false;
    const timer = this.opts.clock.setTimeout(() => {
      graceOver = true;
      void this.kill(taskId, "KILL");
    }, graceMs);
    await entry.exited;
    timer.cancel();
    if (graceOver) this.opts.logger.debug({ taskId }, "task did not stop within its grace period; killed");
  }

  private async kill(taskId: string, signal: "TERM" | "KILL"): Promise<void> {
    // `--all`: every process of the container, not only its init.
    await this.call(["kill", ...(signal === "KILL" ? ["--all"] : []), taskId, signal]).catch(() => undefined);
  }

  async remove(taskId: string): Promise<void> {
    const entry = this.running.get(taskId);
    if (entry !== undefined && !entry.done) {
      await this.kill(taskId, "KILL");
      await entry.exited;
    }
    await this.call(["delete", "--force", taskId]).catch(() => undefined);
    await this.removeCgroups(taskId);
    await rm(this.bundleDir(taskId), { recursive: true, force: true });
    this.running.delete(taskId);
    this.prepared.delete(taskId);
  }

  /** runc leaves the (empty) directories of an absolute cgroupsPath behind on every hierarchy. */
  async removeCgroups(taskId: string): Promise<void> {
    let hierarchies: string[];
    try {
      hierarchies = await readdir(CGROUP_ROOT);
    } catch {
      return;
    }
    for (const hierarchy of hierarchies) {
      const dir = join(CGROUP_ROOT, hierarchy, this.cgroupParent, taskId);
      await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT" && err.code !== "ENOTDIR") this.opts.logger.warn({ taskId, dir, code: err.code }, "cannot remove a task's cgroup directory");
      });
    }
  }

  /** The containers in this agent's runc root. */
  async listContainers(): Promise<string[]> {
    try {
      const { stdout } = await this.call(["list", "--format", "json"]);
      const parsed = JSON.parse(stdout.trim() === "" ? "null" : stdout) as { id: string }[] | null;
      return (parsed ?? []).map((c) => c.id);
    } catch (err) {
      if (isShoalError(err)) throw err;
      return [];
    }
  }

  async cleanupLeftovers(records: { taskId: string; record: TaskRecord }[]): Promise<string[]> {
    const ids = new Set(await this.listContainers());
    const removed: string[] = [];
    for (const id of ids) {
      await this.call(["delete", "--force", id]).catch((err: unknown) => this.opts.logger.warn({ taskId: id, err: err instanceof Error ? err.message : String(err) }, "cannot delete a leftover container"));
      removed.push(id);
    }
    // Bundles and cgroups of recorded tasks, and of any task directory left on disk.
    const bundles = await readdir(join(this.opts.workerDir, "tasks")).catch(() => [] as string[]);
    for (const id of new Set([...ids, ...records.map((r) => r.taskId), ...bundles])) {
      await this.removeCgroups(id);
      await rm(this.bundleDir(id), { recursive: true, force: true });
    }
    return removed;
  }

  private async call(args: string[]): Promise<{ stdout: string }> {
    await mkdir(this.stateRoot, { recursive: true, mode: 0o700 });
    try {
      const { stdout } = await execFileAsync(this.runc, ["--root", this.stateRoot, ...args], { timeout: RUNC_CALL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
      return { stdout };
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === "ENOENT") throw new ShoalError("FAILED_PRECONDITION", `runc is not installed (apt-get install -y runc)`);
      throw new Error(`runc ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
    }
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}
