// DIR/LOCK (DESIGN.md §2): the one daemon that owns a data dir holds it, locked manager or not, from
// before it touches anything else there (the control socket included) until it has stopped.
//
// Node has no flock, so the lock is a LevelDB opened at DIR/LOCK: LevelDB takes an fcntl lock on
// DIR/LOCK/LOCK, which the kernel drops when the process dies, SIGKILL included, so a crashed
// daemon never leaves a stale lock, and LevelDB's own table refuses a second open inside one
// process too. A PID file was rejected: its stale check (`kill(pid, 0)`) is fooled by PID reuse
// after a crash, and two daemons restarting at once can both judge it stale and both take over.
// DIR/LOCK/owner records who holds the lock, only to name that process in the refusal.
import { ClassicLevel } from "classic-level";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ShoalError } from "../base/errors.js";

export const LOCK_DIR_NAME = "LOCK";
const OWNER_FILE = "owner";

interface LockOwner {
  pid: number;
  startedAt: string;
}

function causeCode(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  return typeof cause?.code === "string" ? cause.code : undefined;
}

async function readOwner(lockDir: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(join(lockDir, OWNER_FILE), "utf8")) as Partial<LockOwner>;
    if (typeof owner.pid === "number" && Number.isInteger(owner.pid) && typeof owner.startedAt === "string") {
      return { pid: owner.pid, startedAt: owner.startedAt.slice(0, 40) };
    }
  } catch {
    // No owner file yet (the holder is between taking the lock and writing it) or a damaged one.
  }
  return undefined;
}

export class DataDirLock {
  private constructor(
    private readonly db: ClassicLevel<string, string>,
    readonly path: string,
  ) {}

  /** Takes DIR/LOCK, or throws FAILED_PRECONDITION naming the directory and, if known, the holder. */
  static async acquire(dataDir: string, startedAtMs: number): Promise<DataDirLock> {
    const lockDir = join(dataDir, LOCK_DIR_NAME);
    const db = new ClassicLevel<string, string>(lockDir, { createIfMissing: true });
    try {
      await db.open();
    } catch (err) {
      if (causeCode(err) === "LEVEL_LOCKED") {
        const owner = await readOwner(lockDir);
        const who = owner === undefined ? "another shoal daemon" : `another shoal daemon (process ${owner.pid}, started ${owner.startedAt})`;
        throw new ShoalError(
          "FAILED_PRECONDITION",
          `the data directory ${dataDir} is in use by ${who}: stop that daemon first, or give this one another --data-dir`,
          { cause: err },
        );
      }
      throw new ShoalError("FAILED_PRECONDITION", `cannot take the lock ${lockDir} on the data directory: ${(err as Error).message}; check that it is a directory this user can write`, {
        cause: err,
      });
    }
    const owner: LockOwner = { pid: process.pid, startedAt: new Date(startedAtMs).toISOString() };
    await writeFile(join(lockDir, OWNER_FILE), JSON.stringify(owner) + "\n", { mode: 0o600 }).catch(() => undefined);
    return new DataDirLock(db, lockDir);
  }

  async release(): Promise<void> {
    await this.db.close();
  }
}
