// The worker's content store: blobs by digest under DIR/content/blobs/sha256/<hex> (the OCI
// image-layout's blob layout). A blob is written to a temp file under DIR/content/ingest,
// fsynced, and renamed into place only when its sha256 is the digest it was asked for, so a blob
// that is present is always whole and right; a bad or interrupted download leaves nothing behind.
//
// For the GC (content-gc.ts) the store also knows which blobs are in use right now and when each
// was last used. "In use": a download in flight (`ensure`), and blobs a user pinned (`use`: a
// rootfs being built from them); the GC never removes those, and a blob it is removing is waited
// for by `has`, so a user that checks for it after that sees it gone and fetches it again instead
// of opening a path that vanishes. "Last used": kept in memory, from the injected clock, each
// time a blob is pulled or found by `ensure`, verified into place by `adopt`, or pinned and
// unpinned by a rootfs build. Not in the files' mtime/atime: atime is not kept on noatime or
// relatime mounts, and writing mtime on every use would cost a metadata write per blob per task
// start. After a restart memory is empty and the file's mtime (when it was written) stands in.
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { systemClock, type Clock } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";
import { checkDigest, DigestVerifier, digestHex, sha256Digest } from "../../oci/digest.js";

export class ContentStore {
  readonly blobsDir: string;
  private readonly ingestDir: string;
  /** One download per digest at a time: concurrent tasks of one image share it. */
  private readonly inFlight = new Map<string, Promise<string>>();
  /** Pins by digest (a count: two tasks of one image pin its blobs twice). */
  private readonly pins = new Map<string, number>();
  /** Last use by digest, in the clock's milliseconds (see the top of this file). */
  private readonly lastUse = new Map<string, number>();
  /** Blobs the GC is removing now: `has` waits for them. */
  private readonly removing = new Map<string, Promise<void>>();
  private readonly clock: Clock;

  /** `contentDir` is DIR/content. */
  constructor(contentDir: string, opts: { clock?: Clock } = {}) {
    this.blobsDir = join(contentDir, "blobs", "sha256");
    this.ingestDir = join(contentDir, "ingest");
    this.clock = opts.clock ?? systemClock;
  }

  /** Creates the directories and removes temp files an earlier run left (a crash mid-download). */
  async open(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true, mode: 0o700 });
    await rm(this.ingestDir, { recursive: true, force: true });
    await mkdir(this.ingestDir, { recursive: true, mode: 0o700 });
  }

  pathOf(digest: string): string {
    return join(this.blobsDir, digestHex(digest));
  }

  async has(digest: string): Promise<boolean> {
    await this.removing.get(digest);
    try {
      return (await stat(this.pathOf(digest))).isFile();
    } catch {
      return false;
    }
  }

  /** The digests present (for tests and GC). */
  async list(): Promise<string[]> {
    return (await readdir(this.blobsDir)).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  /**
   * Pins blobs a user reads by path (a rootfs being built from its layers): the GC leaves them
   * alone until the returned release is called (idempotent). Pinning and releasing count as a use.
   */
  use(digests: Iterable<string>): () => void {
    const held = [...new Set(digests)];
    for (const d of held) {
      this.pins.set(d, (this.pins.get(d) ?? 0) + 1);
      this.touch(d);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const d of held) {
        const n = (this.pins.get(d) ?? 1) - 1;
        if (n <= 0) this.pins.delete(d);
        else this.pins.set(d, n);
        this.touch(d);
      }
    };
  }

  /** Whether a blob is pinned or being downloaded by `ensure` now: the GC must not remove it. */
  inUse(digest: string): boolean {
    return this.pins.has(digest) || this.inFlight.has(digest);
  }

  /** When the blob was last used here (clock ms); undefined when not since this process started. */
  lastUsedMs(digest: string): number | undefined {
    return this.lastUse.get(digest);
  }

  private touch(digest: string): void {
    this.lastUse.set(digest, this.clock.nowMs());
  }

  /**
   * The complete blobs with their sizes and last use (memory, else the file's mtime): what the
   * GC weighs. A blob that vanishes while this runs is left out.
   */
  async inventory(): Promise<Array<{ digest: string; size: number; lastUsedMs: number }>> {
    const out: Array<{ digest: string; size: number; lastUsedMs: number }> = [];
    for (const digest of await this.list()) {
      try {
        const st = await stat(this.pathOf(digest));
        if (!st.isFile()) continue;
        out.push({ digest, size: st.size, lastUsedMs: this.lastUse.get(digest) ?? st.mtimeMs });
      } catch {
        // removed meanwhile
      }
    }
    return out;
  }

  /**
   * Removes a complete blob (the GC's only way to delete). Refused (false) when it is in use at
   * the moment of the call; `has` for it waits until the file is gone. A reader that opened the
   * file before keeps reading it (POSIX unlink); one that opens it after gets ENOENT.
   */
  async remove(digest: string): Promise<boolean> {
    if (this.inUse(digest) || this.removing.has(digest)) return false;
    const done = rm(this.pathOf(digest), { force: true }).finally(() => {
      this.removing.delete(digest);
      this.lastUse.delete(digest);
    });
    this.removing.set(digest, done);
    await done;
    return true;
  }

  /** Temp files currently being written (empty when nothing is in flight). */
  async ingesting(): Promise<string[]> {
    return readdir(this.ingestDir);
  }

  /** Reads a small blob, re-checking its digest (a blob on disk may have been changed since). */
  async readVerified(digest: string, maxBytes: number, what: string): Promise<Buffer> {
    const path = this.pathOf(digest);
    const size = (await stat(path)).size;
    if (size > maxBytes) throw new ShoalError("INVALID_ARGUMENT", `${what}: blob ${digest} is ${size} bytes, more than ${maxBytes}`);
    const bytes = await readFile(path);
    checkDigest(digest, sha256Digest(bytes), `${what}: blob ${digest} in the content store`);
    return bytes;
  }

  /**
   * A fresh temp path under DIR/content/ingest for a blob another writer assembles (the P2P piece
   * store); `open` clears it like every temp file, and only `adopt` moves it into place.
   */
  newIngestPath(digest: string): string {
    return join(this.ingestDir, `${digestHex(digest).slice(0, 16)}-${randomBytes(6).toString("hex")}`);
  }

  /**
   * Moves a whole blob written at `tempPath` (from newIngestPath) into the store under the same
   * rule as `ensure`: its bytes are hashed here and must be `digest` and `size` bytes, the file is
   * fsynced, renamed, and the directory fsynced. On a mismatch the temp file is removed and
   * DIGEST_MISMATCH thrown. A blob already present wins: the temp file is dropped.
   */
  async adopt(tempPath: string, digest: string, size: number, what: string): Promise<string> {
    if (dirname(tempPath) !== this.ingestDir) throw new ShoalError("INVALID_ARGUMENT", `${what}: ${tempPath} is not a temp file of this content store`);
    let renamed = false;
    try {
      const verifier = new DigestVerifier();
      const handle = await open(tempPath, "r+");
      try {
        for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) verifier.update(chunk);
        if (verifier.byteCount !== size) throw new ShoalError("DIGEST_MISMATCH", `${what}: blob ${digest} is ${verifier.byteCount} bytes, its descriptor says ${size}`);
        checkDigest(digest, verifier.digest(), `${what}: blob`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (!(await this.has(digest))) {
        await rename(tempPath, this.pathOf(digest));
        renamed = true;
        await syncDir(this.blobsDir);
      }
      this.touch(digest);
      return this.pathOf(digest);
    } finally {
      if (!renamed) await rm(tempPath, { force: true });
    }
  }

  /**
   * Stores `digest` from `source` unless it is already present; returns its path. `size` is the
   * descriptor's: more bytes than that stop the download at once.
   */
  ensure(digest: string, size: number, source: () => Promise<AsyncIterable<Uint8Array>>, what: string): Promise<string> {
    const running = this.inFlight.get(digest);
    if (running !== undefined) return running;
    const job = (async () => {
      if (!(await this.has(digest))) await this.ingest(digest, size, await source(), what);
      this.touch(digest);
      return this.pathOf(digest);
    })().finally(() => this.inFlight.delete(digest));
    this.inFlight.set(digest, job);
    return job;
  }

  private async ingest(digest: string, size: number, source: AsyncIterable<Uint8Array>, what: string): Promise<void> {
    const temp = join(this.ingestDir, `${digestHex(digest).slice(0, 16)}-${randomBytes(6).toString("hex")}`);
    const verifier = new DigestVerifier();
    const handle = await open(temp, "wx", 0o600);
    let renamed = false;
    try {
      for await (const chunk of source) {
        verifier.update(chunk);
        if (verifier.byteCount > size) {
          destroySource(source);
          throw new ShoalError("DIGEST_MISMATCH", `${what}: blob ${digest} sent more than the ${size} bytes its descriptor says`);
        }
        await handle.write(chunk);
      }
      if (verifier.byteCount !== size) throw new ShoalError("DIGEST_MISMATCH", `${what}: blob ${digest} ended after ${verifier.byteCount} of ${size} bytes`);
      checkDigest(digest, verifier.digest(), `${what}: blob`);
      await handle.sync();
      await handle.close();
      await rename(temp, this.pathOf(digest));
      renamed = true;
      await syncDir(this.blobsDir);
    } finally {
      if (!renamed) {
        await handle.close().catch(() => {});
        await rm(temp, { force: true });
      }
    }
  }
}

function destroySource(source: AsyncIterable<Uint8Array>): void {
  const destroy = (source as { destroy?: () => void }).destroy;
  if (typeof destroy === "function") destroy.call(source);
}

/** fsync a directory so a rename in it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
