// OCI and Docker v2 image manifests, image indexes (manifest lists) and the image config: parsing
// with validation (a registry's JSON is untrusted input), and picking this machine's platform out
// of an index.
import { ShoalError } from "../base/errors.js";
import { isDigest } from "./digest.js";

export const MEDIA_TYPES = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/**
 * Sent on every manifest request. An OCI manifest answers 404 to a Docker-only Accept on the
 * Debian registry (CONTAINERS.md), so both families are always listed.
 */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(", ");

/** The bounds on what a registry may hand us before it is read as JSON. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
export const MAX_LAYERS = 256;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  kind: "manifest";
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Array<Descriptor & { platform?: Platform }>;
}

/** What the runc executor needs from an image config (common.md's ImageConfig). */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
}

/** The config plus what unpacking checks against (the uncompressed layer digests). */
export interface ParsedImageConfig {
  config: ImageConfig;
  platform: Platform;
  diffIds: string[];
}

function bad(what: string, why: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", `${what} is not a valid image document: ${why}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw bad(what, "it is not JSON");
  }
  if (!isRecord(value)) throw bad(what, "it is not a JSON object");
  return value;
}

function descriptor(value: unknown, what: string): Descriptor {
  if (!isRecord(value)) throw bad(what, "a descriptor is not an object");
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== "string" || mediaType === "") throw bad(what, "a descriptor has no mediaType");
  if (!isDigest(digest)) throw bad(what, `a descriptor's digest '${String(digest).slice(0, 80)}' is not sha256:<hex>`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw bad(what, `descriptor ${digest} has no valid size`);
  return { mediaType, digest, size };
}

/** The platform this process runs on, in OCI terms (linux/amd64 on these machines). */
export function hostPlatform(): Platform {
  const architecture = ({ x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[process.arch] ?? process.arch;
  return { os: process.platform === "win32" ? "windows" : process.platform, architecture };
}

/**
 * Parses a manifest or an index. `contentType` is the response's Content-Type; the document's own
 * mediaType wins when present (registries vary in what they echo).
 */
export function parseManifestOrIndex(bytes: Uint8Array, contentType: string | undefined, what: string): ImageManifest | ImageIndex {
  const doc = parseJson(bytes, what);
  const mediaType = typeof doc["mediaType"] === "string" ? (doc["mediaType"] as string) : (contentType ?? "").split(";")[0]!.trim();
  if (doc["schemaVersion"] !== 2) throw bad(what, `schemaVersion ${String(doc["schemaVersion"])} is not supported (only 2; Docker schema 1 is obsolete)`);
  const isIndex = mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList || (mediaType === "" && Array.isArray(doc["manifests"]));
  if (isIndex) {
    const list = doc["manifests"];
    if (!Array.isArray(list)) throw bad(what, "an index has no manifests list");
    if (list.length > MAX_LAYERS) throw bad(what, `an index lists more than ${MAX_LAYERS} manifests`);
    const manifests = list.map((entry: unknown) => {
      const d = descriptor(entry, what);
      const p = isRecord(entry) ? entry["platform"] : undefined;
      if (!isRecord(p)) return d;
      const platform: Platform = { os: String(p["os"] ?? ""), architecture: String(p["architecture"] ?? "") };
      if (typeof p["variant"] === "string") platform.variant = p["variant"];
      return { ...d, platform };
    });
    return { kind: "index", mediaType: mediaType || MEDIA_TYPES.ociIndex, manifests };
  }
  if (mediaType !== "" && mediaType !== MEDIA_TYPES.ociManifest && mediaType !== MEDIA_TYPES.dockerManifest) {
    throw bad(what, `media type '${mediaType.slice(0, 100)}' is neither an image manifest nor an index`);
  }
  const layers = doc["layers"];
  if (!Array.isArray(layers)) throw bad(what, "a manifest has no layers list");
  if (layers.length > MAX_LAYERS) throw bad(what, `a manifest has more than ${MAX_LAYERS} layers`);
  return { kind: "manifest", mediaType: mediaType || MEDIA_TYPES.ociManifest, config: descriptor(doc["config"], what), layers: layers.map((l: unknown) => descriptor(l, what)) };
}

/** The entry of `index` for `platform` (a variant is compared only when both name one). */
export function selectPlatform(index: ImageIndex, platform: Platform, what: string): Descriptor {
  const match = index.manifests.find(
    (m) =>
      m.platform !== undefined &&
      m.platform.os === platform.os &&
      m.platform.architecture === platform.architecture &&
      (platform.variant === undefined || m.platform.variant === undefined || m.platform.variant === platform.variant),
  );
  if (match === undefined) {
    const offered = index.manifests.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}` : "unknown")).join(", ") || "none";
    throw new ShoalError("IMAGE_NOT_FOUND", `${what} has no manifest for ${platform.os}/${platform.architecture} (it offers: ${offered})`);
  }
  return { mediaType: match.mediaType, digest: match.digest, size: match.size };
}

function stringList(value: unknown, field: string, what: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw bad(what, `config.${field} is not a list of strings`);
  return value as string[];
}

export function parseImageConfig(bytes: Uint8Array, what: string): ParsedImageConfig {
  const doc = parseJson(bytes, what);
  const inner = doc["config"] === undefined || doc["config"] === null ? {} : doc["config"];
  if (!isRecord(inner)) throw bad(what, "config is not an object");
  const rootfs = doc["rootfs"];
  const diffIds = isRecord(rootfs) && Array.isArray(rootfs["diff_ids"]) ? rootfs["diff_ids"] : [];
  if (!diffIds.every(isDigest)) throw bad(what, "rootfs.diff_ids holds a digest that is not sha256:<hex>");
  const workingDir = inner["WorkingDir"];
  const user = inner["User"];
  if (workingDir !== undefined && typeof workingDir !== "string") throw bad(what, "config.WorkingDir is not a string");
  if (user !== undefined && typeof user !== "string") throw bad(what, "config.User is not a string");
  return {
    config: {
      entrypoint: stringList(inner["Entrypoint"], "Entrypoint", what),
      cmd: stringList(inner["Cmd"], "Cmd", what),
      env: stringList(inner["Env"], "Env", what),
      workingDir: workingDir ?? "",
      user: user ?? "",
    },
    platform: { os: String(doc["os"] ?? ""), architecture: String(doc["architecture"] ?? "") },
    diffIds: diffIds as string[],
  };
}
