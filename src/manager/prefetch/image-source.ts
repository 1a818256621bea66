// What the prefetch loop needs to know of an image, and how a seed may pull it (DESIGN.md §8).
// The daemon implements it with the managers' registry client and logins (src/oci); the loop and
// cluster-sim only see this interface.

export interface PrefetchImage {
  /** The manifest's bytes, verified against its digest. */
  manifest: Buffer;
  /** The config first, then the layers, as the manifest lists them. */
  blobs: { digest: string; size: number }[];
}

export interface SeedAccess {
  /** The Authorization header value a seed pulls with (a scoped Bearer token, or Basic); none: anonymous. */
  authorization?: string;
  /** The registry's CA (PEM) when the login names one. */
  caPem?: string;
}

export interface PrefetchImageSource {
  /** The manifest `digest` of `image` and its blobs; a registry error is a ShoalError with the registry's code. */
  image(image: string, digest: string): Promise<PrefetchImage>;
  /** Asked when a job's seeds are given their orders, and again when their grants are renewed. */
  seedAccess(image: string, digest: string): Promise<SeedAccess>;
}
