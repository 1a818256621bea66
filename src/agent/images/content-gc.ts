// GC of the node's content store over a size cap (`shoal daemon --content-max-bytes`, issue 10):
// when the complete blobs together are larger than the cap, the unreferenced ones go, least
// recently used first, until the store is at or under it. Partial blobs of running prefetch jobs
// are not weighed: they live in the piece store's ingest area, not among the complete blobs.
//
// Referenced, never removed:
//   - the blobs of an image a task on this node uses now, and of an image a prefetch job runs or
//     is ordered for on this node (`roots`, from the wiring: the agent's assignments and orders).
//     An image is its manifest digest: the manifest is read from the store for its config and
//     layers; an index keeps every child manifest the store holds, and their blobs. An order's own
//     blob list and manifest bytes are roots too, so its blobs are kept before its manifest is stored;
//   - blobs the content store says are in use: pinned by a rootfs build, or being downloaded.
// The roots' digests and the store's in-use marks are asked again right before each removal,
// and ContentStore.remove refuses a blob pinned at that instant, so an image that became used
// while a run was under way is not removed from under it (at worst a blob it had not pinned yet
// goes, and is fetched again).
//
// A blob removed is dropped from the piece store's record of whole blobs, so this node stops
// advertising it; a peer reading it at that moment gets the bytes (the file was open) or NOT_FOUND.
//
// Runs are serialized, and `request` debounces them: at most one run per `minIntervalMs` on the
// injected clock, a request during a run asks for one more afterwards. A cap of 0 never runs.
import type { Logger } from "pino";
import type { Clock, Timer } from "../../base/clock.js";
import { MAX_MANIFEST_BYTES, parseManifestOrIndex, type ImageIndex, type ImageManifest } from "../../oci/manifest.js";
import type { ContentStore } from "./content-store.js";
import type { PieceStore } from "./piece-store.js";

/** What is in use on this node now, as the wiring sees it. */
export interface GcRoots {
  /** Manifest (or index) digests of images in use: the manifest and every blob it lists are kept. */
  images: Iterable<string>;
  /** Blobs kept as they are (a prefetch order's blob list). */
  blobs?: Iterable<string>;
  /** Manifests given as bytes (a prefetch order's): the blobs they list are kept. */
  manifests?: Iterable<Uint8Array>;
}

export interface ContentGcOptions {
  store: ContentStore;
  /** Told of every removal, so it stops serving the blob. */
  pieces?: PieceStore;
  /** The cap on the complete blobs' total size; 0 is no cap (nothing is ever removed). */
  maxBytes: number;
  roots: () => GcRoots;
  clock: Clock;
  logger: Logger;
  /** Least time between the starts of two requested runs (default 5 s). */
  minIntervalMs?: number;
}

export interface GcResult {
  /** What was removed, in order. */
  removed: Array<{ digest: string; bytes: number }>;
  /** The complete blobs' total size after the run. */
  totalBytes: number;
  /** True when what is left (all referenced or in use) is still over the cap. */
  overCap: boolean;
}

export const DEFAULT_GC_INTERVAL_MS = 5_000;
const NOTHING: GcResult = { removed: [], totalBytes: 0, overCap: false };

export class ContentGc {
  private running: Promise<GcResult> | undefined;
  private timer: Timer | undefined;
  private again = false;
  private lastStartMs: number | undefined;
  private closed = false;

  constructor(private readonly opts: ContentGcOptions) {}

  get maxBytes(): number {
    return this.opts.maxBytes;
  }

  /** Whether a run is under way (tests and diagnostics). */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Asks for a run soon: now if none started in the last `minIntervalMs`, else when that has passed. */
  request(): void {
    if (this.closed || this.opts.maxBytes <= 0) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    if (this.timer !== undefined) return;
    const interval = this.opts.minIntervalMs ?? DEFAULT_GC_INTERVAL_MS;
    const waitMs = this.lastStartMs === undefined ? 0 : Math.max(0, this.lastStartMs + interval - this.opts.clock.nowMs());
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      void this.run().catch((err: unknown) => this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "content store GC failed"));
    }, waitMs);
  }

  /** One run now (after the one under way, if any). */
  run(): Promise<GcResult> {
    if (this.opts.maxBytes <= 0) return Promise.resolve(NOTHING);
    const previous = this.running ?? Promise.resolve(NOTHING);
    const job = previous
      .catch(() => NOTHING)
      .then(() => {
        this.lastStartMs = this.opts.clock.nowMs();
        return this.collect();
      })
      .finally(() => {
        if (this.running !== job) return;
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
    this.running = job;
    return job;
  }

  /** No more runs are started (one under way finishes). */
  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  private async collect(): Promise<GcResult> {
    const { store, maxBytes, logger } = this.opts;
    const blobs = await store.inventory();
    let totalBytes = blobs.reduce((sum, b) => sum + b.size, 0);
    if (totalBytes <= maxBytes) return { removed: [], totalBytes, overCap: false };
    const kept = await this.referenced();
    const candidates = blobs.filter((b) => !kept.has(b.digest)).sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
    const removed: GcResult["removed"] = [];
    for (const blob of candidates) {
      if (totalBytes <= maxBytes) break;
      // Asked again: an order or task may have come while manifests were read or blobs removed.
      if (this.directRoots().has(blob.digest)) continue;
      if (!(await store.remove(blob.digest))) continue;
      this.opts.pieces?.forgetComplete(blob.digest);
      totalBytes -= blob.size;
      removed.push({ digest: blob.digest, bytes: blob.size });
      logger.info({ digest: blob.digest, bytes: blob.size }, "content store GC removed an unreferenced blob");
    }
    const overCap = totalBytes > maxBytes;
    if (overCap) {
      logger.warn(
        { totalBytes, maxBytes, removedBlobs: removed.length },
        "the content store is still over --content-max-bytes with only blobs in use left: the cap is too small for the images this node uses; nothing in use was removed",
      );
    }
    return { removed, totalBytes, overCap };
  }

  /** The roots' own digests (images and listed blobs), without reading manifests: cheap, synchronous. */
  private directRoots(): Set<string> {
    const roots = this.opts.roots();
    return new Set([...roots.images, ...(roots.blobs ?? [])]);
  }

  /** Every blob the roots reach (manifests read from the store), and every blob the store has in use. */
  private async referenced(): Promise<Set<string>> {
    const roots = this.opts.roots();
    const kept = new Set<string>(roots.blobs ?? []);
    for (const bytes of roots.manifests ?? []) {
      const doc = parsed(bytes);
      if (doc !== undefined) for (const d of listed(doc)) kept.add(d);
    }
    for (const digest of roots.images) await this.reach(digest, kept, 0);
    return kept;
  }

  private async reach(digest: string, kept: Set<string>, depth: number): Promise<void> {
    kept.add(digest);
    if (depth > 1 || !(await this.opts.store.has(digest))) return;
    let bytes: Buffer;
    try {
      bytes = await this.opts.store.readVerified(digest, MAX_MANIFEST_BYTES, `content store GC: blob ${digest}`);
    } catch {
      return; // a layer (too large to be a manifest) or a blob that is not what its name says: kept as it is
    }
    const doc = parsed(bytes);
    if (doc === undefined) return;
    for (const d of listed(doc)) {
      if (doc.kind === "index") await this.reach(d, kept, depth + 1);
      else kept.add(d);
    }
  }
}

function parsed(bytes: Uint8Array): ImageManifest | ImageIndex | undefined {
  try {
    return parseManifestOrIndex(bytes, undefined, "content store GC");
  } catch {
    return undefined;
  }
}

function listed(doc: ImageManifest | ImageIndex): string[] {
  return doc.kind === "index" ? doc.manifests.map((m) => m.digest) : [doc.config.digest, ...doc.layers.map((l) => l.digest)];
}
