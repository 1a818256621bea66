// The worker's content store: blobs by digest under DIR/content/blobs/sha256/<hex> (the OCI
// image-layout's blob layout). A blob is written to a temp file under DIR/content/ingest,
// fsynced, and renamed into place only when its sha256 is the digest it was asked for, so a blob
// that is present is always whole and right; a bad or interrupted download leaves nothing behind.
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ShoalError } from "../../base/errors.js";
import { checkDigest, DigestVerifier, digestHex, sha256Digest } from "../../oci/digest.js";

export class ContentStore {
  readonly blobsDir: string;
  private readonly ingestDir: string;
  /** One download per digest at a time: concurrent tasks of one image share it. */
  private readonly inFlight = new Map<string, Promise<string>>();

  /** `contentDir` is DIR/content. */
  constructor(contentDir: string) {
    this.blobsDir = join(contentDir, "blobs", "sha256");
    this.ingestDir = join(contentDir, "ingest");
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
      if (await this.has(digest)) return this.pathOf(digest);
      await rename(tempPath, this.pathOf(digest));
      renamed = true;
      await syncDir(this.blobsDir);
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
      if (await this.has(digest)) return this.pathOf(digest);
      await this.ingest(digest, size, await source(), what);
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
