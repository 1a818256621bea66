// The worker's ImageProvider (common.md): make a task's root filesystem from an image manifest
// digest. What the content store lacks (manifest, config, layers) is pulled from the registry the
// image reference names, verified against its digest on the way in; the layers are then applied
// in order into a fresh rootfs directory, and the image config is returned for the executor.
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { systemClock, type Clock } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";
import { pullBlob } from "../../oci/blob-pull.js";
import { parseDigest } from "../../oci/digest.js";
import { unpackLayerBlob, type UnpackOptions } from "../../oci/layer-unpack.js";
import { hostPlatform, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, parseImageConfig, parseManifestOrIndex, selectPlatform, type Descriptor, type ImageConfig, type ImageManifest, type Platform } from "../../oci/manifest.js";
import { formatImageReference, parseImageReference, type ImageReference } from "../../oci/reference.js";
import { RegistryClient, type RegistryClientOptions } from "../../oci/registry-client.js";
import { ContentStore } from "./content-store.js";

export type { ImageConfig } from "../../oci/manifest.js";

export interface RegistryImageProviderOptions {
  store: ContentStore;
  client: RegistryClient;
  platform?: Platform;
  unpack?: UnpackOptions;
  /** The timings in `lastTimings`, and the pauses between reopens of a broken blob download. */
  clock?: Clock;
  /** Reopens of one blob download after its connection broke (blob-pull.ts's default unless told). */
  maxPullRetries?: number;
  /** Layers downloaded at once. */
  maxParallelDownloads?: number;
}

/** Timings of the last prepareRootfs, for benchmarks and diagnostics. */
export interface PrepareTimings {
  pullMs: number;
  unpackMs: number;
  bytesPulled: number;
}

export class RegistryImageProvider {
  private readonly platform: Platform;
  lastTimings: PrepareTimings | undefined;

  /** The agent's wiring: a content store in `contentDir` (DIR/content), opened, and a client. */
  static async open(opts: { contentDir: string } & RegistryClientOptions & Omit<RegistryImageProviderOptions, "store" | "client">): Promise<RegistryImageProvider> {
    const store = new ContentStore(opts.contentDir);
    await store.open();
    return new RegistryImageProvider({ ...opts, store, client: new RegistryClient(opts) });
  }

  constructor(private readonly opts: RegistryImageProviderOptions) {
    this.platform = opts.platform ?? hostPlatform();
  }

  async prepareRootfs(req: { image: string; digest: string; rootfsDir: string }): Promise<ImageConfig> {
    const ref = parseImageReference(req.image);
    const digest = parseDigest(req.digest);
    const what = `image ${formatImageReference({ registry: ref.registry, repository: ref.repository, digest })}`;
    const clock = this.opts.clock ?? systemClock;
    const started = clock.nowMs();
    let bytesPulled = 0;
    const pull = async (blob: Descriptor): Promise<string> =>
      this.opts.store.ensure(
        blob.digest,
        blob.size,
        async () => {
          bytesPulled += blob.size;
          // Resumable: a connection that breaks mid-layer is reopened from the byte it got to.
          return pullBlob(this.opts.client, ref, blob, { clock, ...(this.opts.maxPullRetries !== undefined ? { maxRetries: this.opts.maxPullRetries } : {}) });
        },
        what,
      );

    // Every blob is pinned before it is looked for, and stays pinned until the rootfs is built:
    // the content store's GC removes none of them meanwhile (and a pin counts as a use).
    const releases: Array<() => void> = [];
    const pin = (digests: string[]): void => {
      releases.push(this.opts.store.use(digests));
    };
    try {
      const manifest = await withUnavailable(what, () => this.manifestOf(ref, digest, what, 0, pin));
      pin([manifest.config.digest, ...manifest.layers.map((l) => l.digest)]);
      const configBytes = await withUnavailable(what, async () => {
        await pull(manifest.config);
        return this.opts.store.readVerified(manifest.config.digest, MAX_CONFIG_BYTES, what);
      });
      const image = parseImageConfig(configBytes, `${what}: config`);
      if (image.diffIds.length !== 0 && image.diffIds.length !== manifest.layers.length) {
        throw new ShoalError("INVALID_ARGUMENT", `${what}: the config lists ${image.diffIds.length} layers, the manifest ${manifest.layers.length}`);
      }
      const layerPaths = await withUnavailable(what, () => inBatches(manifest.layers, this.opts.maxParallelDownloads ?? 3, pull));
      const pulled = clock.nowMs();

      await mkdir(dirname(req.rootfsDir), { recursive: true });
      try {
        await mkdir(req.rootfsDir, { mode: 0o755 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new ShoalError("FAILED_PRECONDITION", `rootfs directory ${req.rootfsDir} already exists`);
        throw err;
      }
      try {
        for (const [i, layer] of manifest.layers.entries()) {
          const diffId = image.diffIds[i];
          await unpackLayerBlob(req.rootfsDir, layerPaths[i]!, { mediaType: layer.mediaType, digest: layer.digest, ...(diffId !== undefined ? { diffId } : {}) }, what, this.opts.unpack);
        }
      } catch (err) {
        await rm(req.rootfsDir, { recursive: true, force: true });
        throw err;
      }
      this.lastTimings = { pullMs: pulled - started, unpackMs: clock.nowMs() - pulled, bytesPulled };
      return image.config;
    } finally {
      for (const release of releases) release();
    }
  }

  /**
   * Whether the image `digest` is whole in the content store (its manifest, config and every
   * layer), so that prepareRootfs needs no registry. An index is narrowed as prepareRootfs does.
   */
  async holds(digest: string, depth = 0): Promise<boolean> {
    if (!(await this.opts.store.has(digest))) return false;
    let doc: ImageManifest;
    try {
      const parsed = parseManifestOrIndex(await this.opts.store.readVerified(digest, MAX_MANIFEST_BYTES, `image ${digest}`), undefined, `image ${digest}: manifest`);
      if (parsed.kind === "index") return depth === 0 && (await this.holds(selectPlatform(parsed, this.platform, `image ${digest}`).digest, depth + 1));
      doc = parsed;
    } catch {
      return false; // not usable as it is: prepareRootfs says why
    }
    for (const blob of [doc.config, ...doc.layers]) if (!(await this.opts.store.has(blob.digest))) return false;
    return true;
  }

  /** The manifest `digest` (from the store, else the registry); an index is narrowed to this platform. */
  private async manifestOf(ref: ImageReference, digest: string, what: string, depth = 0, pin: (digests: string[]) => void = () => {}): Promise<ImageManifest> {
    pin([digest]);
    let bytes: Buffer;
    let contentType: string | undefined;
    if (await this.opts.store.has(digest)) {
      bytes = await this.opts.store.readVerified(digest, MAX_MANIFEST_BYTES, what);
    } else {
      const fetched = await this.opts.client.fetchManifest(ref, digest); // verified against `digest`
      bytes = fetched.bytes;
      contentType = fetched.contentType;
      await this.opts.store.ensure(digest, bytes.length, async () => oneChunk(bytes), what);
    }
    const doc = parseManifestOrIndex(bytes, contentType, `${what}: manifest`);
    if (doc.kind === "manifest") return doc;
    if (depth > 0) throw new ShoalError("INVALID_ARGUMENT", `${what}: an index points to another index`);
    return this.manifestOf(ref, selectPlatform(doc, this.platform, what).digest, what, depth + 1, pin);
  }
}

async function* oneChunk(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

/** Network failures in the middle of a body arrive as plain errors: they mean the registry went away. */
async function withUnavailable<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ShoalError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNRESET" || code === "EPIPE" || (err as Error).message === "aborted") {
      throw new ShoalError("REGISTRY_UNAVAILABLE", `${what}: the registry connection broke during a download (${code ?? "aborted"})`, { cause: err });
    }
    throw err;
  }
}

/**
 * `fn` over `items`, `width` at a time. After a failure nothing new starts, and the call returns
 * (with the first error) only once the running ones have settled, so no download is still
 * writing a temp file when the caller reports the failure.
 */
async function inBatches<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, width), items.length) }, worker));
  if (failure !== undefined) throw failure.err;
  return out;
}
