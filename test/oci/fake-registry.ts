// A small in-process OCI distribution registry on 127.0.0.1 (plain HTTP, which the client allows on
// loopback) for tests that need to count or refuse what reaches the registry: manifests by tag or
// digest, blobs with single Range requests, and optionally a login (Basic, or Bearer from its own
// token endpoint, which scopes each token to one repository). Every request is recorded.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeImage {
  repository: string;
  /** `127.0.0.1:PORT/<repository>` */
  reference: string;
  digest: string;
  manifest: Buffer;
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
}

export interface FakeRegistry {
  host: string;
  /** `METHOD path` of every request, in order. */
  requests: string[];
  /** Authorization headers the registry saw (to check what a client sent). */
  authorizations: string[];
  /** Bearer tokens issued, by repository scope. */
  tokens: Map<string, string>;
  addImage(repository: string, opts: { config: Buffer; layers: Buffer[]; tag?: string; layerMediaType?: string }): FakeImage;
  /** Stores a raw manifest document under its digest (and `tag`). */
  putManifest(repository: string, bytes: Buffer, mediaType: string, tag?: string): string;
  /** Serves `bytes` as the manifest `digest` (whatever they hash to): a registry that lies. */
  serveManifestAs(repository: string, digest: string, bytes: Buffer): void;
  stop(): Promise<void>;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export async function startFakeRegistry(opts: { auth?: { scheme: "basic" | "bearer"; username: string; password: string } } = {}): Promise<FakeRegistry> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { bytes: Buffer; mediaType: string }>(); // "repo@ref" → manifest
  const requests: string[] = [];
  const authorizations: string[] = [];
  const tokens = new Map<string, string>();
  const auth = opts.auth;
  const basic = auth === undefined ? undefined : `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
  let host = "";

  const allowed = (req: http.IncomingMessage, repository: string | undefined): boolean => {
    if (auth === undefined) return true;
    const given = req.headers.authorization ?? "";
    if (auth.scheme === "basic") return given === basic;
    return repository !== undefined && given === `Bearer ${tokens.get(repository) ?? "-"}`;
  };

  const challenge = (res: http.ServerResponse, repository: string | undefined): void => {
    const header =
      auth!.scheme === "basic" ? `Basic realm="fake"` : `Bearer realm="http://${host}/token",service="fake"${repository !== undefined ? `,scope="repository:${repository}:pull"` : ""}`;
    res.writeHead(401, { "www-authenticate": header, "content-type": "application/json" });
    res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }));
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", `http://${host}`);
    requests.push(`${req.method} ${decodeURIComponent(url.pathname)}`);
    if (req.headers.authorization !== undefined) authorizations.push(req.headers.authorization);
    if (url.pathname === "/token") {
      if (req.headers.authorization !== basic) {
        res.writeHead(401).end();
        return;
      }
      const repository = /^repository:([^:]+):pull$/.exec(url.searchParams.get("scope") ?? "")?.[1];
      if (repository === undefined) {
        res.writeHead(400).end();
        return;
      }
      const token = randomBytes(12).toString("hex");
      tokens.set(repository, token);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token }));
      return;
    }
    if (url.pathname === "/v2/" || url.pathname === "/v2") {
      if (!allowed(req, undefined)) return challenge(res, undefined);
      res.writeHead(200).end("{}");
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (m === null) {
      res.writeHead(404).end();
      return;
    }
    const [, repository, kind, ref] = m as unknown as [string, string, string, string];
    if (!allowed(req, repository)) return challenge(res, repository);
    if (kind === "manifests") {
      const found = manifests.get(`${repository}@${decodeURIComponent(ref)}`);
      if (found === undefined) {
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN" }] }));
        return;
      }
      res.writeHead(200, { "content-type": found.mediaType, "content-length": found.bytes.length, "docker-content-digest": sha256(found.bytes) });
      res.end(req.method === "HEAD" ? undefined : found.bytes);
      return;
    }
    const blob = blobs.get(`${repository}@${ref}`);
    if (blob === undefined) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ errors: [{ code: "BLOB_UNKNOWN" }] }));
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    if (range !== null) {
      const first = Number(range[1]);
      const last = Math.min(Number(range[2]), blob.length - 1);
      res.writeHead(206, { "content-length": last - first + 1, "content-range": `bytes ${first}-${last}/${blob.length}` });
      res.end(req.method === "HEAD" ? undefined : blob.subarray(first, last + 1));
      return;
    }
    res.writeHead(200, { "content-length": blob.length });
    res.end(req.method === "HEAD" ? undefined : blob);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  const putManifest = (repository: string, bytes: Buffer, mediaType: string, tag?: string): string => {
    const digest = sha256(bytes);
    manifests.set(`${repository}@${digest}`, { bytes, mediaType });
    if (tag !== undefined) manifests.set(`${repository}@${tag}`, { bytes, mediaType });
    return digest;
  };

  return {
    host,
    requests,
    authorizations,
    tokens,
    putManifest,
    serveManifestAs: (repository, digest, bytes) => void manifests.set(`${repository}@${digest}`, { bytes, mediaType: "application/vnd.oci.image.manifest.v1+json" }),
    addImage(repository, image) {
      const put = (bytes: Buffer): { digest: string; size: number } => {
        const digest = sha256(bytes);
        blobs.set(`${repository}@${digest}`, bytes);
        return { digest, size: bytes.length };
      };
      const config = put(image.config);
      const layers = image.layers.map(put);
      const mediaType = "application/vnd.oci.image.manifest.v1+json";
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType,
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
          layers: layers.map((l) => ({ mediaType: image.layerMediaType ?? "application/vnd.oci.image.layer.v1.tar+gzip", ...l })),
        }),
      );
      const digest = putManifest(repository, manifest, mediaType, image.tag);
      return { repository, reference: `${host}/${repository}`, digest, manifest, config, layers };
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
