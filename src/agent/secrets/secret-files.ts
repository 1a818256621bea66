// Secret files on tmpfs (DESIGN.md §3 rule 6): `<root>/<task ID>/secrets/<target>`, directories 0700,
// files 0400, written just before the task starts, removed when it ends, when the secret is
// withdrawn, and (the whole root) when the agent starts. The root is on /dev/shm (memory), never
// under the data dir; no path, error or log line here carries a secret's bytes.
import { chown, lstat, mkdir, open, readdir, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { ShoalError } from "../../base/errors.js";

export const DEFAULT_SECRETS_ROOT = "/dev/shm/shoal";
/** tmpfs and ramfs magic numbers (statfs f_type): secret files must live in memory. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const TARGET_PATTERN = /^[A-Za-z0-9._-]{1,255}$/;

export interface SecretFile {
  target: string;
  data: Uint8Array;
}

/** A target is one plain file name: no directories, no `..`, nothing that escapes the task's directory. */
export function checkSecretTarget(target: string): void {
  if (!TARGET_PATTERN.test(target) || target === "." || target === "..") {
    throw new ShoalError("INVALID_ARGUMENT", `secret target "${target}" must be a plain file name (letters, digits, '.', '_', '-')`);
  }
}

export class SecretFiles {
  constructor(private readonly root: string = DEFAULT_SECRETS_ROOT) {}

  get rootDir(): string {
    return this.root;
  }

  taskDir(taskId: string): string {
    return join(this.root, taskId, "secrets");
  }

  /** Removes every secret file under the root (agent start: nothing survives a restart). */
  async wipeAll(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  /** Refuses a root that is not in memory, so secrets never reach a disk. */
  async checkInMemory(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const fs = await statfs(this.root);
    if (fs.type !== TMPFS_MAGIC && fs.type !== RAMFS_MAGIC) {
      throw new ShoalError("FAILED_PRECONDITION", `the secrets directory ${this.root} is not on tmpfs; secrets must stay in memory`);
    }
  }

  /** Writes the task's secret files (0400, owned by the task's user) in a fresh 0700 directory. */
  async write(taskId: string, files: SecretFile[], owner: { uid: number; gid: number }): Promise<string> {
    await this.checkInMemory();
    const dir = this.taskDir(taskId);
    await rm(join(this.root, taskId), { recursive: true, force: true });
    await mkdir(join(this.root, taskId), { mode: 0o700 });
    await mkdir(dir, { mode: 0o700 });
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      await chown(join(this.root, taskId), owner.uid, owner.gid);
      await chown(dir, owner.uid, owner.gid);
    }
    for (const file of files) {
      checkSecretTarget(file.target);
      const handle = await open(join(dir, file.target), "wx", 0o400);
      try {
        await handle.writeFile(file.data);
        if (asRoot) await handle.chown(owner.uid, owner.gid);
      } finally {
        await handle.close();
      }
    }
    return dir;
  }

  /** Removes one secret's file from a task's directory (the secret was withdrawn). */
  async removeFile(taskId: string, target: string): Promise<void> {
    checkSecretTarget(target);
    await rm(join(this.taskDir(taskId), target), { force: true });
  }

  /** Removes the task's directory and everything in it. */
  async remove(taskId: string): Promise<void> {
    await rm(join(this.root, taskId), { recursive: true, force: true });
  }

  /** Task IDs that have a directory (for tests and leftovers). */
  async taskIds(): Promise<string[]> {
    try {
      const names = await readdir(this.root);
      const ids: string[] = [];
      for (const name of names) if ((await lstat(join(this.root, name))).isDirectory()) ids.push(name);
      return ids;
    } catch {
      return [];
    }
  }
}
