// The node's one content store (DIR/content, DESIGN.md §2) and what shares it: the images tasks run
// from (RegistryImageProvider), the P2P piece store that prefetch jobs write into and the peer
// server reads from, and the manifests prefetch orders carry. Two ContentStores on one directory
// would each clear the other's temp files when opened, and a blob one of them fetched would not be
// found by the other's in-flight bookkeeping, so there is exactly one, made here.
//
// Opened on first use, by whichever part needs it first: a node that never runs an image task and
// is never asked for a piece creates nothing. Until it is open the peer server's source holds
// nothing (and asks for the open), so a Have that comes before it is a plain "not held".
//
// With a size cap (`--content-max-bytes`) the GC (content-gc.ts) runs over the store at start
// (when there is a store on disk), after each rootfs build, and whenever the wiring says a task or
// a prefetch job ended (`requestGc`), debounced on the clock.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { systemClock, type Clock } from "../../base/clock.js";
import type { ImageConfig } from "../../oci/manifest.js";
import type { RegistryClientOptions } from "../../oci/registry-client.js";
import { RegistryClient } from "../../oci/registry-client.js";
import { ContentGc, type GcRoots } from "./content-gc.js";
import { ContentStore } from "./content-store.js";
import { RegistryImageProvider } from "./image-provider.js";
import { DEFAULT_PIECE_SIZE, PieceStore } from "./piece-store.js";

interface Opened {
  store: ContentStore;
  pieces: PieceStore;
  provider: RegistryImageProvider;
  /** Undefined without a cap. */
  gc: ContentGc | undefined;
}

export interface NodeImagesOptions {
  /** DIR/content */
  contentDir: string;
  /** How blobs this node holds whole are cut for peers that ask (the manager's plan uses the same). */
  defaultPieceSize?: number;
  /** The registry client of the node's direct pulls (workers pull anonymously unless told). */
  registry?: RegistryClientOptions;
  logger: Logger;
  clock?: Clock;
  /** `--content-max-bytes`: the cap on the complete blobs' total size; 0 or absent: no cap, no GC. */
  contentMaxBytes?: number;
  /** What is in use on the node now (the agent's tasks and prefetch orders); nothing without it. */
  gcRoots?: () => GcRoots;
  /** Least time between two GC runs (default content-gc.ts's). */
  gcMinIntervalMs?: number;
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

export class NodeImages {
  private opened: Promise<Opened> | undefined;
  private current: Opened | undefined;
  private closed = false;

  constructor(private readonly opts: NodeImagesOptions) {}

  /** The content store and its users, opened once (tried again after a failed open). */
  open(): Promise<Opened> {
    this.opened ??= (async () => {
      const clock = this.opts.clock ?? systemClock;
      const store = new ContentStore(this.opts.contentDir, { clock });
      await store.open();
      const pieces = new PieceStore(store, { defaultPieceSize: this.opts.defaultPieceSize ?? DEFAULT_PIECE_SIZE });
      const maxBytes = this.opts.contentMaxBytes ?? 0;
      const gcRoots = this.opts.gcRoots ?? (() => ({ images: [] }));
      const opened: Opened = {
        store,
        pieces,
        provider: new RegistryImageProvider({ store, client: new RegistryClient(this.opts.registry ?? {}) }),
        gc:
          maxBytes > 0
            ? new ContentGc({ store, pieces, maxBytes, roots: () => gcRoots(), clock, logger: this.opts.logger.child({ component: "content-gc" }), ...(this.opts.gcMinIntervalMs !== undefined ? { minIntervalMs: this.opts.gcMinIntervalMs } : {}) })
            : undefined,
      };
      if (this.closed) opened.gc?.close();
      this.current = opened;
      return opened;
    })().catch((err: unknown) => {
      this.opened = undefined;
      throw err;
    });
    return this.opened;
  }

  /**
   * A GC run soon (debounced), when there is a cap: a task or a prefetch job ended, or the node
   * starts. Before the store is opened it is opened only when it exists on disk (nothing to collect
   * otherwise).
   */
  requestGc(): void {
    if ((this.opts.contentMaxBytes ?? 0) <= 0 || this.closed) return;
    if (this.current === undefined && !existsSync(join(this.opts.contentDir, "blobs"))) return;
    void this.open().then(
      (opened) => opened.gc?.request(),
      (err: unknown) => this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "cannot open the content store"),
    );
  }

  /** No more GC runs (daemon stop). */
  close(): void {
    this.closed = true;
    this.current?.gc?.close();
  }

  /** The GC, once the store is open and when there is a cap (tests and diagnostics). */
  get gc(): ContentGc | undefined {
    return this.current?.gc;
  }

  /** The runc executor's ImageProvider: local content first, the registry for what is missing. */
  readonly images = {
    prepareRootfs: async (req: { image: string; digest: string; rootfsDir: string }): Promise<ImageConfig> => {
      const opened = await this.open();
      try {
        return await opened.provider.prepareRootfs(req);
      } finally {
        // It may have pulled blobs that take the store over the cap; its own are unpinned now.
        opened.gc?.request();
      }
    },
    /** Whether the whole image is in the content store already. */
    holds: async (digest: string): Promise<boolean> => (await this.open()).provider.holds(digest),
  };

  /** A PrefetchRunner's manifest: stored only when its bytes are the digest's (the content store checks). */
  readonly storeManifest = async (digest: string, bytes: Buffer): Promise<void> => {
    await (await this.open()).store.ensure(digest, bytes.length, async () => once(bytes), `the manifest ${digest} of a prefetch order`);
  };

  /** The PrefetchRunner's PieceSink: the piece store, once the content store is open. */
  readonly sink = {
    track: async (digest: string, size: number, pieceSize: number, pieceHashes?: ReadonlyArray<string | undefined>) => (await this.open()).pieces.track(digest, size, pieceSize, pieceHashes),
    writePiece: async (digest: string, index: number, bytes: Uint8Array, expectedHash?: string) => (await this.open()).pieces.writePiece(digest, index, bytes, expectedHash),
    writeOriginPiece: async (digest: string, index: number, bytes: Uint8Array) => (await this.open()).pieces.writeOriginPiece(digest, index, bytes),
    complete: async (digest: string, what?: string) => (await this.open()).pieces.complete(digest, what),
    discard: async (digest: string) => (await this.open()).pieces.discard(digest),
  };

  /** The peer server's PieceSource: verified pieces of partial blobs and slices of whole ones. */
  readonly source = {
    held: (digest: string): { pieceSize: number; pieceCount: number; have: Uint8Array } | undefined => {
      if (this.current === undefined) {
        // Answered synchronously: nothing is held until the store is open; open it for the next ask.
        void this.open().catch((err: unknown) => this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "cannot open the content store"));
        return undefined;
      }
      return this.current.pieces.held(digest);
    },
    readPiece: async (digest: string, index: number): Promise<Buffer> => (await this.open()).pieces.readPiece(digest, index),
  };
}
