// What the managers' prefetch loop learns of an image from its registry (DESIGN.md §8): the
// manifest a task's digest names, fetched and verified against that digest, with the blobs every
// node of a job brings in (the config first, then the layers, as the manifest lists them), and what
// a seed needs to pull those blobs itself: the Authorization header this client pulls the
// repository with (a Bearer token scoped to it where the registry issues tokens, so the login stays
// with the managers) and the login's CA. The logins come from `access`, the same per-registry
// lookup the image resolver uses.
//
// The shapes are src/manager/prefetch/image-source.ts's PrefetchImageSource, declared again here
// because src/oci sits below src/manager (DESIGN.md §1) and must not import it; TypeScript checks
// that they match where the daemon passes one for the other.
import { ShoalError } from "../base/errors.js";
import { parseDigest } from "./digest.js";
import { parseManifestOrIndex } from "./manifest.js";
import { formatImageReference, parseImageReference } from "./reference.js";
import { RegistryClient, type RegistryAccess } from "./registry-client.js";

export interface PrefetchImage {
  /** The manifest's bytes, verified against its digest. */
  manifest: Buffer;
  /** The config first, then the layers. */
  blobs: { digest: string; size: number }[];
}

export interface SeedAccess {
  authorization?: string;
  caPem?: string;
}

export interface RegistryPrefetchSourceOptions {
  /** The registry logins (the managers' store); nothing: anonymous. */
  access: (registry: string) => RegistryAccess | undefined;
  /** Shares a client (and the tokens it learned) with the resolver; one is made from `access` otherwise. */
  client?: RegistryClient;
}

export class RegistryPrefetchSource {
  private readonly client: RegistryClient;

  constructor(private readonly opts: RegistryPrefetchSourceOptions) {
    this.client = opts.client ?? new RegistryClient({ access: opts.access });
  }

  async image(image: string, digest: string): Promise<PrefetchImage> {
    const ref = parseImageReference(image);
    parseDigest(digest);
    const what = `image ${formatImageReference({ registry: ref.registry, repository: ref.repository, digest })}`;
    // Asked by digest, so fetchManifest checks the bytes against it.
    const fetched = await this.client.fetchManifest(ref, digest);
    const doc = parseManifestOrIndex(fetched.bytes, fetched.contentType, `${what}: manifest`);
    if (doc.kind !== "manifest") {
      // The resolver narrows an index to this platform's manifest: a task never carries an index's digest.
      throw new ShoalError("INVALID_ARGUMENT", `${what} is an image index, not a manifest: tasks carry the digest of one platform's manifest`);
    }
    return { manifest: fetched.bytes, blobs: [doc.config, ...doc.layers].map((d) => ({ digest: d.digest, size: d.size })) };
  }

  async seedAccess(image: string, digest: string): Promise<SeedAccess> {
    // Asked by the digest the job pulls, so a tag moved or deleted since does not matter.
    const ref = { ...parseImageReference(image), digest };
    const authorization = await this.client.pullAuthorization(ref);
    const ca = this.opts.access(ref.registry)?.ca;
    return {
      ...(authorization !== undefined ? { authorization } : {}),
      ...(ca !== undefined ? { caPem: typeof ca === "string" ? ca : ca.toString("utf8") } : {}),
    };
  }
}
