// The process executor: a task is a child process (command + args, env, dir) in its own process
// group, for nodes without an OCI runtime and services without an image. Its secrets directory is
// in SHOAL_SECRETS_DIR. No isolation and no resource limits: that is what the runc executor is for.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { ShoalError } from "../../../base/errors.js";
import type { Clock } from "../../../base/clock.js";
import { signalExitCode, type ExecTask, type Executor, type ExitStatus, type PreparedTask, type StartedTask, type TaskRecord } from "../executor.js";

interface Running {
  child: ChildProcess;
  exited: Promise<ExitStatus>;
  done: boolean;
}

/** The process's start time in clock ticks since boot (/proc/PID/stat field 22): tells a PID reused by another process apart. */
async function processStartTicks(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may contain spaces: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

function parseUser(user: string): { uid: number; gid: number } | undefined {
  if (user === "") return undefined;
  const m = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(user);
  if (m === null) throw new ShoalError("INVALID_ARGUMENT", `user "${user}" must be UID or UID:GID for a process task`);
  const uid = Number(m[1]);
  return { uid, gid: m[2] === undefined ? uid : Number(m[2]) };
}

export interface ProcessExecutorOptions {
  clock: Clock;
  /** Working directory of tasks that name none. */
  defaultDir: string;
}

export class ProcessExecutor implements Executor {
  readonly name = "process" as const;
  private readonly running = new Map<string, Running>();

  constructor(private readonly opts: ProcessExecutorOptions) {}

  async prepare(task: ExecTask): Promise<PreparedTask> {
    const argv = [...task.spec.command, ...task.spec.args];
    if (argv.length === 0 || argv[0] === "") throw new ShoalError("INVALID_ARGUMENT", "the task has no command to run");
    const user = parseUser(task.spec.user);
    return user ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  }

  async start(task: ExecTask, secretsDir: string | undefined): Promise<StartedTask> {
    const argv = [...task.spec.command, ...task.spec.args];
    const user = parseUser(task.spec.user);
    // A small, explicit environment: the agent's own (which may name its data dir) is not the task's.
    const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", SHOAL_TASK_ID: task.id };
    for (const entry of task.spec.env) {
      const eq = entry.indexOf("=");
      if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
    if (secretsDir !== undefined) env.SHOAL_SECRETS_DIR = secretsDir;
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: task.spec.dir !== "" ? task.spec.dir : this.opts.defaultDir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group, so a stop reaches its children too
      ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
    });
    const exited = new Promise<ExitStatus>((resolve, reject) => {
      let spawned = false;
      child.once("spawn", () => (spawned = true));
      child.once("error", (err) => {
        if (!spawned) reject(new ShoalError("INVALID_ARGUMENT", `cannot start ${argv[0]}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      });
      child.once("exit", (code, signal) => {
        const exitCode = code ?? signalExitCode(signal);
        resolve({ exitCode, message: code !== null ? `exited with code ${code}` : `killed by ${signal}` });
      });
    });
    child.stdout?.on("data", (chunk: Buffer) => task.output?.("stdout", chunk));
    child.stderr?.on("data", (chunk: Buffer) => task.output?.("stderr", chunk));
    const entry: Running = { child, exited, done: false };
    void exited.then(
      () => (entry.done = true),
      () => (entry.done = true),
    );
    // Fails here (and the task is FAILED) when the command does not exist.
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      exited.catch(reject);
    });
    this.running.set(task.id, entry);
    const pid = child.pid!;
    return { pid, record: { pid, startTicks: (await processStartTicks(pid)) ?? "" }, exited };
  }

  async stop(taskId: string, graceMs: number): Promise<void> {
    const entry = this.running.get(taskId);
    if (entry === undefined || entry.done) return;
    const pid = entry.child.pid!;
    const kill = (signal: NodeJS.Signals): void => {
      try {
        process.kill(-pid, signal);
      } catch {
        // already gone
      }
    };
    kill("SIGTERM");
    const timer = this.opts.clock.setTimeout(() => kill("SIGKILL"), graceMs);
    await entry.exited.catch(() => undefined);
    timer.cancel();
  }

  async remove(taskId: string): Promise<void> {
    const entry = this.running.get(taskId);
    if (entry !== undefined && !entry.done) {
      try {
        process.kill(-entry.child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      await entry.exited.catch(() => undefined);
    }
    this.running.delete(taskId);
  }

  async cleanupLeftovers(records: { taskId: string; record: TaskRecord }[]): Promise<string[]> {
    const killed: string[] = [];
    for (const { taskId, record } of records) {
      const pid = Number(record.pid);
      if (!Number.isInteger(pid) || pid <= 1) continue;
      const ticks = await processStartTicks(pid);
      // Only the process this agent started: a PID reused since has another start time.
      if (ticks === undefined || ticks !== String(record.startTicks)) continue;
      try {
        process.kill(-pid, "SIGKILL");
        killed.push(taskId);
      } catch {
        // gone meanwhile
      }
    }
    return killed;
  }
}
