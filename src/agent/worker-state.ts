// The worker's task state under `<data dir>/worker/tasks.json`: which tasks this agent started, with
// which executor, and what the executor needs to find them again (container ID, PID). Never a
// secret. A restarted agent reads it to clean up what the previous process left running.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ShoalError } from "../base/errors.js";
import { writeFileAtomic } from "../storage/index.js";
import type { TaskRecord } from "./executor/executor.js";

export interface PersistedTask {
  taskId: string;
  executor: string;
  /** TaskState name of the last state reported. */
  state: string;
  record: TaskRecord;
}

const FILE_NAME = "tasks.json";
const FORMAT_VERSION = 1;
/** A tasks file larger than this is not one this agent wrote. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

export class WorkerState {
  private readonly tasks = new Map<string, PersistedTask>();
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly workerDir: string) {}

  get file(): string {
    return join(this.workerDir, FILE_NAME);
  }

  /** Reads the file an earlier agent process wrote (none: nothing recorded). */
  async load(): Promise<PersistedTask[]> {
    let text: string;
    try {
      const bytes = await readFile(this.file);
      if (bytes.length > MAX_FILE_BYTES) throw new ShoalError("STORE_CORRUPT", `${this.file} is larger than ${MAX_FILE_BYTES} bytes`);
      text = bytes.toString("utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ShoalError("STORE_CORRUPT", `${this.file} is not valid JSON; remove it to start with no recorded tasks`);
    }
    const tasks = (parsed as { version?: number; tasks?: unknown }).tasks;
    if ((parsed as { version?: number }).version !== FORMAT_VERSION || !Array.isArray(tasks)) {
      throw new ShoalError("STORE_CORRUPT", `${this.file} is not a version ${FORMAT_VERSION} worker state file`);
    }
    const out: PersistedTask[] = [];
    for (const t of tasks as PersistedTask[]) {
      if (typeof t?.taskId === "string" && typeof t.executor === "string" && typeof t.state === "string" && typeof t.record === "object" && t.record !== null) out.push(t);
    }
    return out;
  }

  set(task: PersistedTask): Promise<void> {
    this.tasks.set(task.taskId, task);
    return this.save();
  }

  delete(taskId: string): Promise<void> {
    if (!this.tasks.delete(taskId)) return this.writing;
    return this.save();
  }

  /** Replaces what is recorded (after the cleanup at start: nothing is left running). */
  clear(): Promise<void> {
    this.tasks.clear();
    return this.save();
  }

  private save(): Promise<void> {
    const text = JSON.stringify({ version: FORMAT_VERSION, tasks: [...this.tasks.values()] });
    this.writing = this.writing.catch(() => undefined).then(() => writeFileAtomic(this.file, text, 0o600));
    return this.writing;
  }
}
