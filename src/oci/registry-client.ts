// The OCI distribution client: `GET /v2/`, manifests by tag or digest, blobs, with anonymous,
// Basic or Bearer auth, redirects for blobs, and every status mapped to a stable error code whose
// message names the image and the registry (never a credential).
import { Readable } from "node:stream";
import { ShoalError } from "../base/errors.js";
import { basicAuthorization, fetchBearerToken, parseChallenge, type RegistryCredentials } from "./auth.js";
import { checkDigest, sha256Digest } from "./digest.js";
import { discardBody, isLoopbackHost, readBody, sendRequest, type HttpResponse } from "./http.js";
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, type Descriptor } from "./manifest.js";
import { formatImageReference, type ImageReference } from "./reference.js";

/** How to reach one registry: its CA (then HTTPS even on loopback) and its credentials. */
export interface RegistryAccess {
  ca?: string | Buffer;
  credentials?: RegistryCredentials;
  /**
   * A ready Authorization header value (what a prefetch seed gets from a manager for one job: a
   * Bearer token scoped to the repository, or Basic). Used as it is; a 401 to it is an error.
   */
  authorization?: string;
}

export interface RegistryClientOptions {
  /** Per registry (`host[:port]`); nothing = anonymous, HTTPS unless the host is loopback. */
  access?: (registry: string) => RegistryAccess | undefined;
  /** A request fails when the registry is silent this long. */
  idleTimeoutMs?: number;
}

/** Bytes `offset` .. `offset + length - 1` of a blob; without `length`, to its end. */
export interface BlobRange {
  offset: number;
  length?: number;
}

export interface FetchedManifest {
  bytes: Buffer;
  /** sha256 of `bytes`: checked against the digest asked for, or the registry's Docker-Content-Digest. */
  digest: string;
  contentType: string | undefined;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY_BYTES = 16 * 1024;

export class RegistryClient {
  private readonly idleTimeoutMs: number;
  /** Authorization header per `registry/repository`, learned from the last challenge. */
  private readonly authorizations = new Map<string, string>();

  constructor(private readonly options: RegistryClientOptions = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  }

  /** `GET /v2/`: resolves when the registry answers and accepts us. */
  async ping(registry: string): Promise<void> {
    const res = await this.send(registry, undefined, "/v2/", "GET", {});
    discardBody(res);
    if (res.status !== 200) throw await this.statusError(res, `registry ${registry}`, registry);
  }

  /** The manifest or index `reference` (a tag or a digest) of `image`, its bytes verified. */
  async fetchManifest(image: ImageReference, reference: string): Promise<FetchedManifest> {
    const what = `image ${formatImageReference(image)}`;
    const res = await this.send(image.registry, image.repository, `/v2/${image.repository}/manifests/${encodeURIComponent(reference)}`, "GET", {
      accept: MANIFEST_ACCEPT,
    });
    if (res.status !== 200) {
      throw await this.statusError(res, `${what} (manifest '${reference}')`, image.registry, `${what}: registry ${image.registry} has no manifest '${reference}' in repository ${image.repository}`);
    }
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, `${what}: the manifest`);
    const digest = sha256Digest(bytes);
    if (reference.startsWith("sha256:")) checkDigest(reference, digest, `${what}: manifest from registry ${image.registry}`);
    const announced = header(res, "docker-content-digest");
    if (announced !== undefined && announced.startsWith("sha256:")) checkDigest(announced, digest, `${what}: manifest from registry ${image.registry} (its Docker-Content-Digest)`);
    return { bytes, digest, contentType: header(res, "content-type") };
  }

  /**
   * A stream of the blob's bytes, or with `range` of `length` bytes from `offset` (to the end when
   * `length` is left out). The caller verifies them (the content store hashes as it writes); the
   * stream fails with DIGEST_MISMATCH when more bytes arrive than asked for. A ranged request is
   * answered 206 with a Content-Range that must be exactly the range asked for, of a blob of
   * `blob.size` bytes; a registry that ignores Range and answers 200 with the whole blob is
   * served too, by dropping the bytes before `offset` (a slice costs the whole prefix then).
   */
  async openBlob(image: ImageReference, blob: Descriptor, range?: BlobRange): Promise<Readable> {
    const what = `image ${formatImageReference(image)}: blob ${blob.digest}`;
    const slice = range === undefined ? undefined : checkRange(range, blob.size, what);
    // An empty tail (offset = size) is asked of no registry: there is nothing to send.
    if (slice !== undefined && slice.length === 0) return Readable.from([]);
    const headers: Record<string, string> = slice !== undefined ? { range: `bytes=${slice.offset}-${slice.offset + slice.length - 1}` } : {};
    const res = await this.send(image.registry, image.repository, `/v2/${image.repository}/blobs/${blob.digest}`, "GET", headers, true);
    if (res.status !== 200 && !(res.status === 206 && slice !== undefined)) {
      throw await this.statusError(res, what, image.registry, `${what}: registry ${image.registry} has no such blob in repository ${image.repository}`);
    }
    const declared = Number(res.headers["content-length"] ?? NaN);
    const fail = (code: "DIGEST_MISMATCH" | "REGISTRY_UNAVAILABLE", message: string): never => {
      res.body.destroy();
      throw new ShoalError(code, `${what}: registry ${image.registry} ${message}`);
    };
    if (res.status === 206) {
      const got = parseContentRange(header(res, "content-range"));
      if (got === undefined) fail("REGISTRY_UNAVAILABLE", `answered a Range request with 206 and no usable Content-Range ('${(header(res, "content-range") ?? "").slice(0, 80)}')`);
      if (got!.size !== undefined && got!.size !== blob.size) fail("DIGEST_MISMATCH", `says the blob is ${got!.size} bytes, the manifest says ${blob.size}`);
      if (got!.first !== slice!.offset || got!.last !== slice!.offset + slice!.length - 1) {
        fail("REGISTRY_UNAVAILABLE", `sent bytes ${got!.first}-${got!.last} when asked for ${slice!.offset}-${slice!.offset + slice!.length - 1}`);
      }
      if (Number.isFinite(declared) && declared !== slice!.length) fail("REGISTRY_UNAVAILABLE", `announced ${declared} bytes for a range of ${slice!.length}`);
      return sliceOf(res.body, 0, slice!.length, true, what);
    }
    if (Number.isFinite(declared) && declared !== blob.size) fail("DIGEST_MISMATCH", `announced ${declared} bytes, the manifest says ${blob.size}`);
    if (slice === undefined) return res.body;
    // A registry (or a proxy in front of it) that ignores Range: skip to the slice ourselves.
    return sliceOf(res.body, slice.offset, slice.length, false, what);
  }

  /**
   * The Authorization header value this client pulls `image` with (undefined: the registry lets
   * anyone pull): asks for the manifest by HEAD so that the registry's challenge is answered, and
   * returns what answered it — for a token registry a Bearer token the token server scoped to
   * `repository:<name>:pull`, for a Basic registry the Basic header. A manager hands it to a
   * prefetch seed so that the seed never holds the login itself where the registry uses tokens.
   */
  async pullAuthorization(image: ImageReference): Promise<string | undefined> {
    const res = await this.send(image.registry, image.repository, `/v2/${image.repository}/manifests/${encodeURIComponent(image.digest ?? image.tag ?? "latest")}`, "HEAD", { accept: MANIFEST_ACCEPT });
    discardBody(res);
    if (res.status !== 200) throw await this.statusError(res, `image ${formatImageReference(image)}`, image.registry);
    return this.authorizations.get(`${image.registry}/${image.repository}`);
  }

  private accessOf(registry: string): RegistryAccess {
    return this.options.access?.(registry) ?? {};
  }

  private baseUrl(registry: string): URL {
    const access = this.accessOf(registry);
    const hostname = registry.replace(/:\d+$/, "");
    // A loopback registry without a CA speaks plain HTTP (as the test registry does); anything
    // else is HTTPS, and http.ts refuses plain HTTP to a non-loopback host however we got there.
    const scheme = access.ca === undefined && isLoopbackHost(hostname) ? "http" : "https";
    return new URL(`${scheme}://${registry}`);
  }

  /**
   * One request with auth: try with what we learned last time; on a 401, answer its challenge
   * once and retry. `followRedirects` is for blobs, which registries may serve from elsewhere; the
   * Authorization header is not sent to another origin.
   */
  private async send(registry: string, repository: string | undefined, path: string, method: "GET" | "HEAD", headers: Record<string, string>, followRedirects = false): Promise<HttpResponse> {
    const access = this.accessOf(registry);
    const peer = `registry ${registry}`;
    const authKey = `${registry}/${repository ?? ""}`;
    let authorization = this.authorizations.get(authKey) ?? access.authorization;
    for (let attempt = 0; ; attempt++) {
      const res = await this.sendFollowing(new URL(path, this.baseUrl(registry)), method, headers, authorization, access, peer, followRedirects);
      if (res.status !== 401) return res;
      discardBody(res);
      if (access.authorization !== undefined && access.credentials === undefined) {
        throw new ShoalError("UNAUTHENTICATED", `${peer} refused the authorization a manager gave for ${repository !== undefined ? `repository ${repository}` : "access"} (expired or out of scope); the manager issues a new one`);
      }
      const challenge = parseChallenge(header(res, "www-authenticate"));
      if (attempt > 0 || challenge === undefined) {
        throw new ShoalError(
          "UNAUTHENTICATED",
          access.credentials === undefined
            ? `${peer} requires a login for ${repository !== undefined ? `repository ${repository}` : "access"} (shoal registry login ${registry})`
            : `${peer} refused the credentials of user '${access.credentials.username}' for ${repository !== undefined ? `repository ${repository}` : "access"}`,
        );
      }
      if (challenge.scheme === "basic") {
        if (access.credentials === undefined) throw new ShoalError("UNAUTHENTICATED", `${peer} requires a login (shoal registry login ${registry})`);
        authorization = basicAuthorization(access.credentials);
      } else {
        authorization = await fetchBearerToken({
          challenge,
          defaultScope: repository !== undefined ? `repository:${repository}:pull` : "",
          idleTimeoutMs: this.idleTimeoutMs,
          peer,
          ...(access.credentials !== undefined ? { credentials: access.credentials } : {}),
          ...(access.ca !== undefined ? { ca: access.ca } : {}),
        });
      }
      this.authorizations.set(authKey, authorization);
    }
  }

  private async sendFollowing(
    first: URL,
    method: "GET" | "HEAD",
    headers: Record<string, string>,
    authorization: string | undefined,
    access: RegistryAccess,
    peer: string,
    followRedirects: boolean,
  ): Promise<HttpResponse> {
    let url = first;
    for (let hop = 0; ; hop++) {
      const sameOrigin = url.origin === first.origin;
      const res = await sendRequest({
        method,
        url,
        headers: { ...headers, ...(authorization !== undefined && sameOrigin ? { authorization } : {}) },
        idleTimeoutMs: this.idleTimeoutMs,
        peer,
        ...(access.ca !== undefined ? { ca: access.ca } : {}),
      });
      const location = header(res, "location");
      if (!followRedirects || ![301, 302, 303, 307, 308].includes(res.status) || location === undefined) return res;
      discardBody(res);
      if (hop >= MAX_REDIRECTS) throw new ShoalError("REGISTRY_UNAVAILABLE", `${peer} redirected more than ${MAX_REDIRECTS} times`);
      url = new URL(location, url);
    }
  }

  /** The error for a non-success status; `notFound` is the whole sentence for a 404. */
  private async statusError(res: HttpResponse, what: string, registry: string, notFound?: string): Promise<ShoalError> {
    const detail = await registryErrorDetail(res);
    let suffix = detail !== "" ? ` (${detail})` : "";
    if (res.status === 404) return new ShoalError("IMAGE_NOT_FOUND", `${notFound ?? `${what}: not found at registry ${registry}`}${suffix}`);
    if (res.status === 403) return new ShoalError("UNAUTHENTICATED", `${what}: registry ${registry} denied access${suffix}`);
    if (res.status === 401) return new ShoalError("UNAUTHENTICATED", `${what}: registry ${registry} requires a login${suffix}`);
    if (res.status === 429 || res.status >= 500) return new ShoalError("REGISTRY_UNAVAILABLE", `${what}: registry ${registry} answered HTTP ${res.status}${suffix}`);
    // A TLS port asked in plain HTTP answers 400: the registry is on loopback but serves HTTPS.
    if (res.status === 400 && this.baseUrl(registry).protocol === "http:") suffix += "; if it serves HTTPS, give its CA file";
    return new ShoalError("REGISTRY_UNAVAILABLE", `${what}: registry ${registry} answered HTTP ${res.status} unexpectedly${suffix}`);
  }
}

function header(res: HttpResponse, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** `errors[0].code` of a registry's JSON error body, if any (bounded, best effort). */
async function registryErrorDetail(res: HttpResponse): Promise<string> {
  if (res.body.readableEnded || res.body.destroyed) return "";
  try {
    const body = await readBody(res, MAX_ERROR_BODY_BYTES, "an error body");
    const doc = JSON.parse(body.toString("utf8")) as { errors?: Array<{ code?: unknown }> };
    const code = doc.errors?.[0]?.code;
    return typeof code === "string" && /^[A-Z_]{1,64}$/.test(code) ? code : "";
  } catch {
    res.body.destroy();
    return "";
  }
}

/** The range to ask for, whole and inside the blob, or INVALID_ARGUMENT (a caller's mistake, not the registry's). */
function checkRange(range: BlobRange, size: number, what: string): { offset: number; length: number } {
  const { offset } = range;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) throw new ShoalError("INVALID_ARGUMENT", `${what}: range offset ${offset} is outside a blob of ${size} bytes`);
  const length = range.length ?? size - offset;
  if (!Number.isSafeInteger(length) || length < 0 || offset + length > size) {
    throw new ShoalError("INVALID_ARGUMENT", `${what}: a range of ${length} bytes from ${offset} does not fit a blob of ${size} bytes`);
  }
  return { offset, length };
}

/** `bytes FIRST-LAST/SIZE` (SIZE may be `*`), as RFC 9110 §14.4 writes it; undefined if it is not that. */
function parseContentRange(value: string | undefined): { first: number; last: number; size: number | undefined } | undefined {
  const m = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)$/.exec((value ?? "").trim());
  if (m === null) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (last < first) return undefined;
  return { first, last, size: m[3] === "*" ? undefined : Number(m[3]) };
}

/**
 * Bytes `skip` .. `skip + length - 1` of `body`. With `strict` (a 206 body, which should be just
 * the range), a byte past them is DIGEST_MISMATCH; without (a whole 200 body), the rest is not
 * read. A short body is the reader's to notice (the resumable pull counts what it got).
 */
function sliceOf(body: Readable, skip: number, length: number, strict: boolean, what: string): Readable {
  async function* slice(): AsyncGenerator<Buffer> {
    let seen = 0;
    const end = skip + length;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      const start = seen;
      seen += chunk.length;
      if (strict && seen > end) throw new ShoalError("DIGEST_MISMATCH", `${what}: the registry sent more than the ${length} bytes asked for`);
      const from = Math.max(0, skip - start);
      const to = Math.min(chunk.length, end - start);
      if (from < to) yield from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to);
      // Leaving the loop destroys the body: the rest of a whole-blob answer is not downloaded;
      // a 206 body is read to its end so that an excess byte is seen.
      if (!strict && seen >= end) return;
    }
  }
  return Readable.from(slice(), { objectMode: false });
}
