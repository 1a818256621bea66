// Partial blobs for the P2P prefetch: a blob a job is fetching piece by piece lives in one sparse
// temp file under DIR/content/ingest (0600), and a piece is written into it only after its bytes
// hash to the piece hash of the plan, so every piece this node advertises or serves is verified.
// When all pieces are in, the whole file is checked against the blob digest by the content store
// and renamed into place (ContentStore.adopt); a mismatch drops the whole file. A seed pulling from
// the origin has no piece hashes yet: it writes its pieces unchecked and reports their hashes, and
// the blob digest at the end is what protects it.
//
// Also the node's PieceSource for its peer server: verified pieces of partial blobs, and slices of
// complete blobs in the content store. Every piece read is hashed again against the hash recorded
// for it when there is one (a partial blob always has them; a complete blob has them when it was
// assembled here), so a disk that changed a byte makes this node refuse the piece (STORE_CORRUPT)
// instead of being reported as a bad peer. A complete blob pulled straight from the registry has
// no recorded piece hashes and is served as it is: the receiver checks every piece anyway.
//
// Partial blobs are kept in memory only: a restart forgets them (ContentStore.open clears ingest),
// and the job fetches them again; complete blobs survive, being in the content store.
import { statSync } from "node:fs";
import { open, rm, type FileHandle } from "node:fs/promises";
import { clearBit, countBits, hasBit, isComplete, newBitfield, pieceCountOf, setBit } from "../../base/bitfield.js";
import { ShoalError } from "../../base/errors.js";
import { parseDigest, sha256Digest } from "../../oci/digest.js";
import type { ContentStore } from "./content-store.js";

export const DEFAULT_PIECE_SIZE = 4 * 1024 * 1024;
/** Larger pieces would not fit the peer client's bound on one piece (64 MiB). */
export const MAX_PIECE_SIZE = 64 * 1024 * 1024;
const PIECE_HASH = /^sha256:[0-9a-f]{64}$/;

export interface BlobGeometry {
  size: number;
  pieceSize: number;
  pieceCount: number;
}

interface PartialBlob extends BlobGeometry {
  digest: string;
  path: string;
  handle: FileHandle;
  hashes: Array<string | undefined>;
  /** Verified pieces on disk. */
  have: Uint8Array;
  /** Pieces being written now: a duplicate (endgame) write of one of them is dropped. */
  writing: Set<number>;
  /** Writes in progress, which complete and discard wait for. */
  pending: Set<Promise<unknown>>;
  state: "open" | "completing" | "closed";
}

interface CompleteBlob extends BlobGeometry {
  /** Recorded when the blob was assembled here; undefined for a blob pulled whole. */
  hashes: ReadonlyArray<string | undefined> | undefined;
}


function checkGeometry(digest: string, size: number, pieceSize: number): BlobGeometry {
  parseDigest(digest);
  if (!Number.isSafeInteger(size) || size < 0) throw new ShoalError("INVALID_ARGUMENT", `blob ${digest}: size must be a non-negative integer, got ${size}`);
  if (!Number.isSafeInteger(pieceSize) || pieceSize < 1 || pieceSize > MAX_PIECE_SIZE) {
    throw new ShoalError("INVALID_ARGUMENT", `blob ${digest}: piece size must be an integer between 1 and ${MAX_PIECE_SIZE}, got ${pieceSize}`);
  }
  return { size, pieceSize, pieceCount: pieceCountOf(size, pieceSize) };
}

export class PieceStore {
  private readonly partial = new Map<string, PartialBlob>();
  private readonly completed = new Map<string, CompleteBlob>();
  private readonly defaultPieceSize: number;

  /** `store` must be open. Blobs in it that no job assembled are served in `defaultPieceSize` pieces. */
  constructor(
    private readonly store: ContentStore,
    opts: { defaultPieceSize?: number } = {},
  ) {
    this.defaultPieceSize = opts.defaultPieceSize ?? DEFAULT_PIECE_SIZE;
    checkGeometry(`sha256:${"0".repeat(64)}`, 0, this.defaultPieceSize);
  }

  /**
   * Registers a blob of a job (idempotent for the same geometry) and says what is held of it: all
   * of it when the content store has it, else the verified pieces written so far (none for a new
   * blob, whose sparse temp file is made now). `pieceHashes`, when known, is one hash per piece;
   * an entry may be undefined for a hash the manager has not published yet.
   */
  async track(digest: string, size: number, pieceSize: number, pieceHashes?: ReadonlyArray<string | undefined>): Promise<{ have: Uint8Array; complete: boolean; path?: string }> {
    const geometry = checkGeometry(digest, size, pieceSize);
    if (pieceHashes !== undefined) {
      if (pieceHashes.length !== geometry.pieceCount) throw new ShoalError("INVALID_ARGUMENT", `blob ${digest}: ${pieceHashes.length} piece hashes for ${geometry.pieceCount} pieces`);
      for (const h of pieceHashes) if (h !== undefined && !PIECE_HASH.test(h)) throw new ShoalError("INVALID_ARGUMENT", `blob ${digest}: a piece hash is not sha256:<64 hex>`);
    }
    const existing = this.partial.get(digest);
    if (existing !== undefined && existing.state !== "closed") {
      if (existing.size !== size || existing.pieceSize !== pieceSize) {
        throw new ShoalError("INVALID_ARGUMENT", `blob ${digest} is already being fetched as ${existing.size} bytes in pieces of ${existing.pieceSize}`);
      }
      pieceHashes?.forEach((h, i) => this.learnHash(existing, i, h));
      return { have: new Uint8Array(existing.have), complete: false };
    }
    if (await this.store.has(digest)) {
      const known = this.completed.get(digest);
      if (known === undefined || known.pieceSize !== pieceSize) this.completed.set(digest, { ...geometry, hashes: pieceHashes ? [...pieceHashes] : known?.hashes });
      const have = newBitfield(geometry.pieceCount);
      for (let i = 0; i < geometry.pieceCount; i++) setBit(have, i);
      return { have, complete: true, path: this.store.pathOf(digest) };
    }
    const path = this.store.newIngestPath(digest);
    // Read and write: its verified pieces are served to peers while the rest arrive.
    const handle = await open(path, "wx+", 0o600);
    try {
      // Sparse: the file has its final length at once and pieces land at their offsets.
      await handle.truncate(size);
    } catch (err) {
      await handle.close().catch(() => {});
      await rm(path, { force: true });
      throw err;
    }
    const blob: PartialBlob = {
      ...geometry,
      digest,
      path,
      handle,
      hashes: pieceHashes ? [...pieceHashes] : new Array<string | undefined>(geometry.pieceCount).fill(undefined),
      have: newBitfield(geometry.pieceCount),
      writing: new Set(),
      pending: new Set(),
      state: "open",
    };
    this.partial.set(digest, blob);
    return { have: newBitfield(geometry.pieceCount), complete: false };
  }

  /**
   * Writes piece `index` after checking its bytes against its hash: the one given to `track`, or
   * `expectedHash` (a hash published after the job started). PIECE_CORRUPT when they differ, and
   * nothing is written; FAILED_PRECONDITION when no hash is known. A piece already held is a no-op.
   */
  async writePiece(digest: string, index: number, bytes: Uint8Array, expectedHash?: string): Promise<void> {
    const blob = this.openPartial(digest);
    this.checkPiece(blob, index, bytes);
    if (expectedHash !== undefined) this.learnHash(blob, index, expectedHash);
    const want = blob.hashes[index];
    if (want === undefined) throw new ShoalError("FAILED_PRECONDITION", `blob ${digest}: the hash of piece ${index} is not known yet`);
    const got = sha256Digest(bytes);
    if (got !== want) throw new ShoalError("PIECE_CORRUPT", `blob ${digest}: piece ${index} hashes to ${got}, the plan says ${want}`);
    await this.write(blob, index, bytes);
  }

  /**
   * A seed's piece from the origin, written without a known hash; returns its sha256 for the seed
   * to report. If a hash is known for it already and differs, PIECE_CORRUPT and nothing written.
   */
  async writeOriginPiece(digest: string, index: number, bytes: Uint8Array): Promise<string> {
    const blob = this.openPartial(digest);
    this.checkPiece(blob, index, bytes);
    const got = sha256Digest(bytes);
    const want = blob.hashes[index];
    if (want !== undefined && want !== got) throw new ShoalError("PIECE_CORRUPT", `blob ${digest}: piece ${index} from the origin hashes to ${got}, the plan says ${want}`);
    blob.hashes[index] = got;
    await this.write(blob, index, bytes);
    return got;
  }

  /** The verified pieces of a blob being fetched (a copy); undefined when none is tracked. */
  progress(digest: string): Uint8Array | undefined {
    const blob = this.partial.get(digest);
    return blob === undefined ? undefined : new Uint8Array(blob.have);
  }

  /**
   * Every piece is in: the whole file is checked against the blob digest and moved into the
   * content store; returns its path there. DIGEST_MISMATCH drops all of it (the job starts over).
   */
  async complete(digest: string, what = `blob ${digest}`): Promise<string> {
    const blob = this.openPartial(digest);
    if (!isComplete(blob.have, blob.pieceCount)) {
      throw new ShoalError("FAILED_PRECONDITION", `${what}: only ${countBits(blob.have)} of ${blob.pieceCount} pieces are in`);
    }
    blob.state = "completing";
    await Promise.allSettled([...blob.pending]);
    try {
      await blob.handle.close();
      const path = await this.store.adopt(blob.path, digest, blob.size, what);
      this.completed.set(digest, { size: blob.size, pieceSize: blob.pieceSize, pieceCount: blob.pieceCount, hashes: [...blob.hashes] });
      return path;
    } finally {
      blob.state = "closed";
      this.partial.delete(digest);
      await rm(blob.path, { force: true });
    }
  }

  /** Drops a partial blob and its temp file (a cancelled job); a no-op when none is tracked. */
  async discard(digest: string): Promise<void> {
    const blob = this.partial.get(digest);
    if (blob === undefined || blob.state !== "open") return;
    blob.state = "closed";
    this.partial.delete(digest);
    await Promise.allSettled([...blob.pending]);
    await blob.handle.close().catch(() => {});
    await rm(blob.path, { force: true });
  }

  /**
   * The content store's GC removed this complete blob: it is no longer advertised (a partial blob
   * of the same digest, in the ingest area, is not touched). A read that races the removal still
   * ends cleanly: readPiece answers NOT_FOUND when the file is gone.
   */
  forgetComplete(digest: string): void {
    this.completed.delete(digest);
  }

  // --- PieceSource (src/agent/p2p/peer-server.ts) -------------------------------------------

  held(digest: string): { pieceSize: number; pieceCount: number; have: Uint8Array } | undefined {
    const blob = this.partial.get(digest);
    if (blob !== undefined && blob.state !== "closed") return { pieceSize: blob.pieceSize, pieceCount: blob.pieceCount, have: new Uint8Array(blob.have) };
    const whole = this.completeBlob(digest);
    if (whole === undefined) return undefined;
    const have = newBitfield(whole.pieceCount);
    for (let i = 0; i < whole.pieceCount; i++) setBit(have, i);
    return { pieceSize: whole.pieceSize, pieceCount: whole.pieceCount, have };
  }

  async readPiece(digest: string, index: number): Promise<Buffer> {
    const blob = this.partial.get(digest);
    if (blob !== undefined && blob.state === "open") {
      if (!Number.isInteger(index) || index < 0 || index >= blob.pieceCount || !hasBit(blob.have, index)) throw new ShoalError("NOT_FOUND", `blob ${digest}: piece ${index} is not held`);
      const bytes = await readAt(blob.handle, index * blob.pieceSize, pieceLength(blob, index));
      return this.reverified(digest, index, bytes, blob.hashes[index], () => clearBit(blob.have, index));
    }
    const whole = this.completeBlob(digest);
    if (whole === undefined || !Number.isInteger(index) || index < 0 || index >= whole.pieceCount) throw new ShoalError("NOT_FOUND", `blob ${digest}: piece ${index} is not held`);
    let handle: FileHandle;
    try {
      handle = await open(this.store.pathOf(digest), "r");
    } catch {
      // GC removed it, or it is being completed this instant: not held, as far as a peer can tell.
      this.completed.delete(digest);
      throw new ShoalError("NOT_FOUND", `blob ${digest} is no longer held`);
    }
    try {
      const bytes = await readAt(handle, index * whole.pieceSize, pieceLength(whole, index));
      return this.reverified(digest, index, bytes, whole.hashes?.[index], () => this.completed.delete(digest));
    } finally {
      await handle.close();
    }
  }

  // --- internals ----------------------------------------------------------------------------

  private reverified(digest: string, index: number, bytes: Buffer, hash: string | undefined, forget: () => void): Buffer {
    if (hash === undefined || sha256Digest(bytes) === hash) return bytes;
    forget();
    throw new ShoalError("STORE_CORRUPT", `blob ${digest}: piece ${index} on this node's disk no longer matches its hash; it is not served`);
  }

  /** A complete blob: one a job assembled here, or one the content store holds (from a direct pull). */
  private completeBlob(digest: string): CompleteBlob | undefined {
    const known = this.completed.get(digest);
    if (known !== undefined) return known;
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return undefined;
    // held() is synchronous (a Have answer); one stat of a local file is cheap and rare, since the
    // answer is remembered.
    try {
      const st = statSync(this.store.pathOf(digest));
      if (!st.isFile()) return undefined;
      const whole: CompleteBlob = { ...checkGeometry(digest, st.size, this.defaultPieceSize), hashes: undefined };
      this.completed.set(digest, whole);
      return whole;
    } catch {
      return undefined;
    }
  }

  private openPartial(digest: string): PartialBlob {
    const blob = this.partial.get(digest);
    if (blob === undefined || blob.state !== "open") throw new ShoalError("NOT_FOUND", `blob ${digest} is not being fetched here (track it first)`);
    return blob;
  }

  private checkPiece(blob: PartialBlob, index: number, bytes: Uint8Array): void {
    if (!Number.isInteger(index) || index < 0 || index >= blob.pieceCount) throw new ShoalError("INVALID_ARGUMENT", `blob ${blob.digest}: piece ${index} is out of range (${blob.pieceCount} pieces)`);
    const want = pieceLength(blob, index);
    if (bytes.length !== want) throw new ShoalError("PIECE_CORRUPT", `blob ${blob.digest}: piece ${index} is ${bytes.length} bytes, ${want} expected`);
  }

  private learnHash(blob: PartialBlob, index: number, hash: string | undefined): void {
    if (hash === undefined) return;
    if (!PIECE_HASH.test(hash)) throw new ShoalError("INVALID_ARGUMENT", `blob ${blob.digest}: the hash of piece ${index} is not sha256:<64 hex>`);
    const known = blob.hashes[index];
    if (known !== undefined && known !== hash) throw new ShoalError("INVALID_ARGUMENT", `blob ${blob.digest}: piece ${index} already has another hash; the plan changed under a running job`);
    blob.hashes[index] = hash;
  }

  private async write(blob: PartialBlob, index: number, bytes: Uint8Array): Promise<void> {
    if (hasBit(blob.have, index) || blob.writing.has(index)) return;
    blob.writing.add(index);
    const job = (async () => {
      let at = 0;
      while (at < bytes.length) {
        const { bytesWritten } = await blob.handle.write(bytes, at, bytes.length - at, index * blob.pieceSize + at);
        at += bytesWritten;
      }
    })();
    blob.pending.add(job);
    try {
      await job;
      // Advertised only once its bytes are in the file, and not after a discard started.
      if (blob.state === "open") setBit(blob.have, index);
    } finally {
      blob.pending.delete(job);
      blob.writing.delete(index);
    }
  }
}

function pieceLength(g: BlobGeometry, index: number): number {
  return Math.min(g.pieceSize, g.size - index * g.pieceSize);
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  let at = 0;
  while (at < length) {
    const { bytesRead } = await handle.read(out, at, length - at, position + at);
    if (bytesRead === 0) throw new ShoalError("STORE_CORRUPT", `a blob file ended at byte ${position + at}, before the piece it should hold`);
    at += bytesRead;
  }
  return out;
}
