// What runs a task on a worker (DESIGN.md §7): one interface, two implementations (`runc/` for OCI
// images, `process/` for a plain child process). The task runner drives it: prepare → start →
// wait → (stop) → remove. Executors know nothing of sessions, stores or secrets' data: the runner
// hands them a directory that holds the task's secret files.
import { constants as osConstants } from "node:os";
import type { ContainerSpec } from "../../proto/shoal/v1/objects.js";
import type { ImageConfig } from "../../oci/manifest.js";

/** SIGTERM, then SIGKILL after this long, unless the task says otherwise. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

export interface ExecTask {
  id: string;
  spec: ContainerSpec;
  /** Receives the task's stdout and stderr. */
  output?: (stream: "stdout" | "stderr", chunk: Buffer) => void;
  /** While it prepares: a new PREPARING status message (image progress), at most about once a second. */
  progress?: (message: string) => void;
  /** Aborted when the task is stopped: a preparation that waits (for its image) gives up. */
  signal?: AbortSignal;
}

export interface PreparedTask {
  /** Who the task runs as: secret files are made readable by this user. */
  uid: number;
  gid: number;
}

export interface ExitStatus {
  /** The exit code; 128 + the signal number after a signal (137 after SIGKILL and OOM kills). */
  exitCode: number;
  message: string;
}

/** Executor-specific facts about a started task, persisted (no secrets) so a restarted agent can clean up. */
export type TaskRecord = Record<string, string | number>;

export interface StartedTask {
  pid: number;
  record: TaskRecord;
  /** Settles once when the task exits. */
  exited: Promise<ExitStatus>;
}

export interface Executor {
  readonly name: "runc" | "process";
  /**
   * Everything before the start that can fail because of the task (image, command, user): a
   * ShoalError here makes the task REJECTED with its message.
   */
  prepare(task: ExecTask): Promise<PreparedTask>;
  /** Starts the task; `secretsDir` (a directory of secret files, or undefined) is made visible to it. */
  start(task: ExecTask, secretsDir: string | undefined): Promise<StartedTask>;
  /** SIGTERM, then SIGKILL after `graceMs` if it still runs; resolves once it exited (or was not running). */
  stop(taskId: string, graceMs: number): Promise<void>;
  /** Removes what the task left (bundle, cgroups); safe to call more than once and for tasks that never started. */
  remove(taskId: string): Promise<void>;
  /** Kills and removes what an earlier agent process left behind: the tasks recorded, and any other it finds. */
  cleanupLeftovers(records: { taskId: string; record: TaskRecord }[]): Promise<string[]>;
}

/** The image side of the runc executor (implemented by `src/agent/images/`, wired by the agent). */
export interface ImageProvider {
  /** Pulls (if needed) and unpacks the image with manifest `digest` (pulled from the registry
   * named in `image`) into `rootfsDir` (which must not exist yet); returns the image config.
   * `progress` and `signal` are the task's (ExecTask). */
  prepareRootfs(opts: { image: string; digest: string; rootfsDir: string; progress?: (message: string) => void; signal?: AbortSignal }): Promise<ImageConfig>;
}

/** What the runc executor needs from an image config: the OCI layer's own type. */
export type { ImageConfig } from "../../oci/manifest.js";

/** Exit code of a process ended by `signal`, as shells and Docker report it. */
export function signalExitCode(signal: NodeJS.Signals | null): number {
  if (signal === null) return 1;
  return 128 + (osConstants.signals[signal] ?? 0);
}
