// The distribution client and the ImageResolver against a real registry (Debian's docker-registry,
// started by scripts/lib/registry.ts): resolve by tag, digest and index; missing images; a stopped
// registry; HTTPS with a CA file; htpasswd Basic auth; token (Bearer) auth with the registry's own
// auth.token verifying our token server's JWTs. Starts child processes: run under the heavy lock.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import tls from "node:tls";
import { isShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { sha256Digest } from "../../src/oci/digest.js";
import { MEDIA_TYPES } from "../../src/oci/manifest.js";
import { createImageResolver } from "../../src/oci/resolver.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { ensureContainerTools } from "../../scripts/lib/container-tools.js";
import { startRegistry, startTokenServer, type LocalRegistry } from "../../scripts/lib/registry.js";
import { buildTestImage, type TestImage } from "../../scripts/lib/test-image.js";

let registry: LocalRegistry;
let image: TestImage;

before(async () => {
  await ensureContainerTools();
  registry = await startRegistry();
  image = await buildTestImage({ registry: registry.host, name: "app", tag: "1" });
});

after(async () => {
  await registry?.stop();
});

function rejectsWith(code: ShoalErrorCode, pattern: RegExp, forbidden: string[] = []) {
  return (err: unknown): boolean => {
    assert.ok(isShoalError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    for (const secret of forbidden) assert.ok(!(err as Error).message.includes(secret), `the message must not contain '${secret}': ${(err as Error).message}`);
    return true;
  };
}

test("resolve by tag gives the pushed manifest digest; by digest (and tag@digest) it is checked to exist", async () => {
  const resolve = createImageResolver();
  assert.deepEqual(await resolve(image.reference), { digest: image.digest });
  assert.deepEqual(await resolve(image.pinned), { digest: image.digest });
  assert.deepEqual(await resolve(`${image.reference}@${image.digest}`), { digest: image.digest });
});

test("a missing tag, repository or digest is IMAGE_NOT_FOUND naming the image and the registry", async () => {
  const resolve = createImageResolver();
  await assert.rejects(resolve(`${registry.host}/app:nope`), rejectsWith("IMAGE_NOT_FOUND", new RegExp(`image ${registry.host}/app:nope: registry ${registry.host} has no manifest 'nope'`)));
  await assert.rejects(resolve(`${registry.host}/nothing-here:1`), rejectsWith("IMAGE_NOT_FOUND", /repository nothing-here/));
  await assert.rejects(resolve(`${registry.host}/app@sha256:${"0".repeat(64)}`), rejectsWith("IMAGE_NOT_FOUND", /no manifest 'sha256:0000/));
});

test("an image index resolves to this platform's manifest; a platform it lacks is IMAGE_NOT_FOUND", async () => {
  const client = new RegistryClient();
  const manifest = await client.fetchManifest(parseImageReference(image.reference), image.digest);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [
        { mediaType: MEDIA_TYPES.ociManifest, digest: image.digest, size: manifest.bytes.length, platform: { os: "linux", architecture: "arm64" } },
        { mediaType: MEDIA_TYPES.ociManifest, digest: image.digest, size: manifest.bytes.length, platform: { os: "linux", architecture: "amd64" } },
      ],
    }),
  );
  await putManifest(registry.host, "app", "multi", index, MEDIA_TYPES.ociIndex);
  const resolve = createImageResolver();
  assert.deepEqual(await resolve(`${registry.host}/app:multi`), { digest: image.digest }, "the index's own digest is not what tasks run");
  assert.notEqual(sha256Digest(index), image.digest);
  await assert.rejects(createImageResolver({ platform: { os: "linux", architecture: "s390x" } })(`${registry.host}/app:multi`), rejectsWith("IMAGE_NOT_FOUND", /no manifest for linux\/s390x \(it offers: linux\/arm64, linux\/amd64\)/));
});

test("a stopped registry is REGISTRY_UNAVAILABLE", async () => {
  const gone = await startRegistry();
  await gone.stop();
  await assert.rejects(createImageResolver({ idleTimeoutMs: 5000 })(`${gone.host}/app:1`), rejectsWith("REGISTRY_UNAVAILABLE", new RegExp(`registry ${gone.host}.*connection refused`)));
});

test("HTTPS with a CA file works; without the CA the TLS failure is REGISTRY_UNAVAILABLE saying so", async () => {
  const secure = await startRegistry({ tls: true });
  try {
    const pushed = await buildTestImage({ registry: secure.host, name: "tls-app" });
    const withCa = createImageResolver({ access: (r) => (r === secure.host ? { ca: secure.caPem! } : undefined) });
    assert.deepEqual(await withCa(pushed.reference), { digest: pushed.digest });
    // Trusting some other CA (here a public root) instead of the registry's: the TLS handshake fails.
    const otherCa = tls.rootCertificates[0]!;
    await assert.rejects(createImageResolver({ access: () => ({ ca: otherCa }) })(pushed.reference), rejectsWith("REGISTRY_UNAVAILABLE", /TLS failed .*give the registry's CA file/));
    // No CA at all: a loopback registry is asked in plain HTTP, and the answer says what to do.
    await assert.rejects(createImageResolver()(pushed.reference), rejectsWith("REGISTRY_UNAVAILABLE", /HTTP 400.*if it serves HTTPS, give its CA file/));
  } finally {
    await secure.stop();
  }
});

test("htpasswd Basic auth: no login and a wrong password are UNAUTHENTICATED without the password; the right one resolves", async () => {
  const user = { username: "alice", password: "correct-horse-7f3a9" };
  const wrong = "wrong-battery-51c2e";
  const guarded = await startRegistry({ htpasswd: [user] });
  try {
    const pushed = await buildTestImage({ registry: guarded.host, name: "private", credentials: user });
    await assert.rejects(createImageResolver()(pushed.reference), rejectsWith("UNAUTHENTICATED", new RegExp(`registry ${guarded.host} requires a login`)));
    await assert.rejects(
      createImageResolver({ access: () => ({ credentials: { username: "alice", password: wrong } }) })(pushed.reference),
      rejectsWith("UNAUTHENTICATED", /refused the credentials of user 'alice'/, [wrong, Buffer.from(`alice:${wrong}`).toString("base64")]),
    );
    const ok = createImageResolver({ access: (r) => (r === guarded.host ? { credentials: user } : undefined) });
    assert.deepEqual(await ok(pushed.reference), { digest: pushed.digest });
  } finally {
    await guarded.stop();
  }
});

test("Bearer: the registry's 401 challenge leads to our token server and back; a wrong password is UNAUTHENTICATED without it", async () => {
  const user = { username: "bob", password: "token-pass-93be1" };
  const tokens = await startTokenServer({ users: [user] });
  const guarded = await startRegistry({ token: tokens });
  try {
    const pushed = await buildTestImage({ registry: guarded.host, name: "team/tokened", credentials: user });
    tokens.requests.length = 0;
    const resolve = createImageResolver({ access: () => ({ credentials: user }) });
    assert.deepEqual(await resolve(pushed.reference), { digest: pushed.digest });
    assert.ok(tokens.requests.some((r) => r.granted && r.account === "bob" && r.scopes.includes("repository:team/tokened:pull")), JSON.stringify(tokens.requests));
    await assert.rejects(
      createImageResolver({ access: () => ({ credentials: { username: "bob", password: "not-it-2b7d" } }) })(pushed.reference),
      rejectsWith("UNAUTHENTICATED", new RegExp(`token server 127\\.0\\.0\\.1:\\d+ of registry ${guarded.host} refused the credentials of user 'bob'`), ["not-it-2b7d"]),
    );
    await assert.rejects(createImageResolver()(pushed.reference), rejectsWith("UNAUTHENTICATED", /refused an anonymous token/));
  } finally {
    await guarded.stop();
    await tokens.stop();
  }
});

test("pullAuthorization: a token registry's Bearer token scoped to one repository pulls it alone; a Basic registry's header; anonymous is undefined", async () => {
  const user = { username: "erin", password: "seed-pass-4c0f2" };
  const tokens = await startTokenServer({ users: [user] });
  const guarded = await startRegistry({ token: tokens });
  try {
    const pushed = await buildTestImage({ registry: guarded.host, name: "team/seeded", credentials: user });
    const other = await buildTestImage({ registry: guarded.host, name: "team/other", credentials: user });
    const manager = new RegistryClient({ access: () => ({ credentials: user }) });
    const authorization = await manager.pullAuthorization(parseImageReference(pushed.reference));
    assert.ok(authorization !== undefined && authorization.startsWith("Bearer "), "a token registry gives a Bearer token");
    assert.ok(!authorization.includes(user.password) && !authorization.includes(Buffer.from(`erin:${user.password}`).toString("base64")));
    assert.ok(tokens.requests.some((r) => r.granted && r.scopes.includes("repository:team/seeded:pull")), JSON.stringify(tokens.requests));
    // What a seed holds: the header alone, no login. It pulls the image it was given...
    const seed = new RegistryClient({ access: () => ({ authorization }) });
    const ref = parseImageReference(pushed.pinned);
    const manifest = await seed.fetchManifest(ref, pushed.digest);
    assert.equal(manifest.digest, pushed.digest);
    // ...and nothing else: another repository of the same registry is refused, saying why.
    await assert.rejects(seed.fetchManifest(parseImageReference(other.pinned), other.digest), rejectsWith("UNAUTHENTICATED", /refused the authorization a manager gave for repository team\/other/, [authorization.slice(7)]));
  } finally {
    await guarded.stop();
    await tokens.stop();
  }
  const basicUser = { username: "frank", password: "basic-pass-8e21" };
  const basic = await startRegistry({ htpasswd: [basicUser] });
  try {
    const pushed = await buildTestImage({ registry: basic.host, name: "plain", credentials: basicUser });
    const header = await new RegistryClient({ access: () => ({ credentials: basicUser }) }).pullAuthorization(parseImageReference(pushed.reference));
    assert.equal(header, `Basic ${Buffer.from("frank:basic-pass-8e21").toString("base64")}`);
    assert.equal(await new RegistryClient().pullAuthorization(parseImageReference(`${registry.host}/app:1`)).catch((err: Error) => err.message), undefined);
  } finally {
    await basic.stop();
  }
});

test("a token realm over plain HTTP off this machine is refused before any credential is sent", async () => {
  const server = http.createServer((_req, res) => res.writeHead(401, { "www-authenticate": 'Bearer realm="http://192.0.2.7/token",service="x"' }).end());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  try {
    await assert.rejects(
      createImageResolver({ access: () => ({ credentials: { username: "u", password: "p-secret-88" } }) })(`127.0.0.1:${port}/app:1`),
      rejectsWith("INVALID_ARGUMENT", /refusing plain HTTP to token server 192\.0\.2\.7/, ["p-secret-88"]),
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

function putManifest(host: string, repo: string, tag: string, body: Buffer, mediaType: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(`http://${host}/v2/${repo}/manifests/${tag}`, { method: "PUT", headers: { "content-type": mediaType, "content-length": body.length } }, (res) => {
      res.resume();
      res.statusCode === 201 ? resolve() : reject(new Error(`PUT manifest answered ${res.statusCode}`));
    });
    req.on("error", reject);
    req.end(body);
  });
}
