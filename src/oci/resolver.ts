// The leader's ImageResolver (common.md): an image reference → the digest of its manifest for
// this platform, so that every task of a service version runs the same bytes. A tag is looked up;
// an index is narrowed to the platform's manifest, which is fetched too (so it is known to exist);
// an image given by digest is fetched and checked the same way.
import { ShoalError } from "../base/errors.js";
import { hostPlatform, parseManifestOrIndex, selectPlatform, type Platform } from "./manifest.js";
import { formatImageReference, manifestReferenceOf, parseImageReference } from "./reference.js";
import { RegistryClient, type RegistryClientOptions } from "./registry-client.js";

export type ImageResolver = (image: string) => Promise<{ digest: string }>;

export interface ImageResolverOptions extends RegistryClientOptions {
  /** The platform tasks run on; linux/amd64 on these machines. */
  platform?: Platform;
  /** Shares a client (and its learned tokens) with other users. */
  client?: RegistryClient;
}

export function createImageResolver(opts: ImageResolverOptions = {}): ImageResolver {
  const client = opts.client ?? new RegistryClient(opts);
  const platform = opts.platform ?? hostPlatform();
  return async (image: string) => {
    const ref = parseImageReference(image);
    const what = `image ${formatImageReference(ref)}`;
    let fetched = await client.fetchManifest(ref, manifestReferenceOf(ref));
    let doc = parseManifestOrIndex(fetched.bytes, fetched.contentType, what);
    if (doc.kind === "index") {
      const chosen = selectPlatform(doc, platform, what);
      fetched = await client.fetchManifest(ref, chosen.digest);
      doc = parseManifestOrIndex(fetched.bytes, fetched.contentType, what);
      if (doc.kind !== "manifest") throw new ShoalError("INVALID_ARGUMENT", `${what}: the index entry for ${platform.os}/${platform.architecture} is itself an index`);
    }
    return { digest: fetched.digest };
  };
}
