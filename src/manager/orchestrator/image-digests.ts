// The image digest each service version runs: resolved once per service spec version on the leader
// (with the injected ImageResolver), so every task of that version runs the same bytes. A version
// whose tasks already carry a digest (a new leader, a scale) reuses it instead of asking again.
import { ShoalError, isShoalError } from "../../base/errors.js";
import type { Clock } from "../../base/clock.js";
import type { Service, Task } from "../../proto/shoal/v1/objects.js";
import type { ImageState } from "./reconcile.js";
import { DEFAULT_RESTART_DELAY_MS } from "./restart-policy.js";
import { serviceFingerprint, taskFingerprint } from "./task-template.js";

/** common.md: implemented in src/oci; throws ShoalError IMAGE_NOT_FOUND / REGISTRY_UNAVAILABLE / INVALID_ARGUMENT. */
export type ImageResolver = (image: string) => Promise<{ digest: string }>;

const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

interface Entry {
  specVersion: bigint;
  image: string;
  digest?: string;
  failure?: { message: string; fresh: boolean; retryAtMs: number };
}

export class ImageDigests {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly resolve: ImageResolver,
    private readonly clock: Clock,
  ) {}

  /** What the planner may use for `service` now. */
  state(service: Service, tasks: readonly Task[]): ImageState {
    const image = service.spec!.container?.image ?? "";
    if (image === "") return { kind: "none" };
    const entry = this.entries.get(service.id);
    if (entry !== undefined && entry.specVersion === service.specVersion && entry.image === image) {
      if (entry.digest !== undefined) return { kind: "resolved", digest: entry.digest };
      const f = entry.failure!;
      if (f.fresh || this.clock.nowMs() < f.retryAtMs) return { kind: "failed", ...f };
      return { kind: "unknown" };
    }
    const fingerprint = serviceFingerprint(service);
    const known = tasks.find((t) => t.spec !== undefined && t.spec.imageDigest !== "" && taskFingerprint(t) === fingerprint);
    if (known !== undefined) {
      this.entries.set(service.id, { specVersion: service.specVersion, image, digest: known.spec!.imageDigest });
      return { kind: "resolved", digest: known.spec!.imageDigest };
    }
    return { kind: "unknown" };
  }

  /** Asks the registry (through the resolver); a failure is kept until the service's restart delay passes. */
  async resolveFor(service: Service): Promise<void> {
    const image = service.spec!.container?.image ?? "";
    const entry: Entry = { specVersion: service.specVersion, image };
    try {
      const { digest } = await this.resolve(image);
      if (!DIGEST_PATTERN.test(digest)) throw new Error(`the registry answered with an invalid digest for ${image}`);
      entry.digest = digest;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const code = isShoalError(err) ? ` (${err.code})` : "";
      const delay = Number(service.spec!.restartPolicy?.delayMs ?? 0n) || DEFAULT_RESTART_DELAY_MS;
      entry.failure = { message: `cannot resolve image ${image}${code}: ${reason}`, fresh: true, retryAtMs: this.clock.nowMs() + delay };
    }
    this.entries.set(service.id, entry);
  }

  /** The tasks that a fresh failure made REJECTED are written: later passes wait for the retry time. */
  failureUsed(serviceId: string): void {
    const f = this.entries.get(serviceId)?.failure;
    if (f !== undefined) f.fresh = false;
  }

  forget(serviceId: string): void {
    this.entries.delete(serviceId);
  }
}

/**
 * The resolver of a manager without a registry client: a reference pinned by digest
 * (`name@sha256:…`) resolves to that digest; a tag cannot be resolved.
 */
export const pinnedDigestResolver: ImageResolver = async (image) => {
  const at = image.lastIndexOf("@");
  const digest = at < 0 ? "" : image.slice(at + 1);
  if (DIGEST_PATTERN.test(digest)) return { digest };
  throw new ShoalError("UNAVAILABLE", `this manager has no registry client to resolve ${JSON.stringify(image)}; pin the image by digest (name@sha256:…)`);
};
