// Crash-safe small-file writes: temp file in the same directory, fsync, rename, fsync the
// directory. A reader sees the old file or the new one, never a torn mix.
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

/** Writes `data` to `path` atomically with permissions `mode` (default 0600, owner only). */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.tmp-${randomBytes(6).toString("hex")}`);
  const file = await open(tmp, "wx", mode);
  try {
    // Explicit chmod: the mode given to open() is reduced by the umask but never widened.
    await file.chmod(mode);
    await file.writeFile(data);
    await file.sync();
  } catch (err) {
    await file.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await file.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  // The rename is durable only once the directory entry is.
  const dirHandle = await open(dir, "r");
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
