// The managers' image source for P2P prefetch against an in-process registry: the manifest of a
// task's digest (verified) and its blobs, config first; what a seed pulls with — nothing for an
// anonymous registry, a Bearer token scoped to the repository (never the login) for a token
// registry, the Basic header for a Basic one — and the login's CA; a registry that serves other
// bytes for the digest, an index, and a missing manifest are refused with their codes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { isShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { MEDIA_TYPES } from "../../src/oci/manifest.js";
import { RegistryPrefetchSource } from "../../src/oci/prefetch-source.js";
import type { RegistryClient } from "../../src/oci/registry-client.js";
import { startFakeRegistry, type FakeImage, type FakeRegistry } from "./fake-registry.js";

let open: FakeRegistry;
let image: FakeImage;

before(async () => {
  open = await startFakeRegistry();
  image = open.addImage("app", { config: Buffer.from('{"config":{}}'), layers: [Buffer.from("layer one"), Buffer.from("layer two, longer")], tag: "1" });
});

after(async () => {
  await open?.stop();
});

function rejectsWith(code: ShoalErrorCode, pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isShoalError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  };
}

test("image() gives the manifest's bytes and its blobs, the config first, then the layers in order", async () => {
  const source = new RegistryPrefetchSource({ access: () => undefined });
  const got = await source.image(`${image.reference}:1`, image.digest);
  assert.deepEqual(got.manifest, image.manifest);
  assert.deepEqual(got.blobs, [image.config, ...image.layers]);
  assert.ok(open.requests.includes(`GET /v2/app/manifests/${image.digest}`), "asked by digest, not by tag");
});

test("an anonymous registry: a seed pulls with no header and no CA", async () => {
  const source = new RegistryPrefetchSource({ access: () => undefined });
  assert.deepEqual(await source.seedAccess(`${image.reference}:1`, image.digest), {});
  assert.ok(open.requests.includes(`HEAD /v2/app/manifests/${image.digest}`), "the seed's access is asked by digest (a tag moved since does not matter)");
});

test("bytes that are not the digest's are DIGEST_MISMATCH; an index is INVALID_ARGUMENT; a missing manifest IMAGE_NOT_FOUND", async () => {
  const source = new RegistryPrefetchSource({ access: () => undefined });
  const lie = `sha256:${"ab".repeat(32)}`;
  open.serveManifestAs("app", lie, image.manifest);
  await assert.rejects(source.image(image.reference, lie), rejectsWith("DIGEST_MISMATCH", /manifest/));
  const index = open.putManifest(
    "app",
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: image.digest, size: image.manifest.length, platform: { os: "linux", architecture: "amd64" } }] })),
    MEDIA_TYPES.ociIndex,
  );
  await assert.rejects(source.image(image.reference, index), rejectsWith("INVALID_ARGUMENT", /is an image index, not a manifest/));
  await assert.rejects(source.image(image.reference, `sha256:${"0".repeat(64)}`), rejectsWith("IMAGE_NOT_FOUND", /no manifest/));
  await assert.rejects(source.image(image.reference, "latest"), rejectsWith("INVALID_ARGUMENT", /digest/));
});

test("a token registry: the seed gets the Bearer token the token server scoped to the repository, never the login", async () => {
  const registry = await startFakeRegistry({ auth: { scheme: "bearer", username: "ci", password: "hunter2-secret" } });
  try {
    const img = registry.addImage("team/app", { config: Buffer.from("{}"), layers: [Buffer.from("x")], tag: "2" });
    const source = new RegistryPrefetchSource({ access: (r) => (r === registry.host ? { credentials: { username: "ci", password: "hunter2-secret" } } : undefined) });
    assert.deepEqual((await source.image(`${img.reference}:2`, img.digest)).blobs, [img.config, ...img.layers]);
    const access = await source.seedAccess(`${img.reference}:2`, img.digest);
    assert.equal(access.authorization, `Bearer ${registry.tokens.get("team/app")}`);
    assert.ok(!JSON.stringify(access).includes("hunter2"), "the password does not reach a seed");
    assert.equal(access.caPem, undefined);
    // Without the login the registry refuses the manager itself.
    const anonymous = new RegistryPrefetchSource({ access: () => undefined });
    await assert.rejects(anonymous.image(img.reference, img.digest), rejectsWith("UNAUTHENTICATED", /log in/));
  } finally {
    await registry.stop();
  }
});

test("a Basic registry: the seed gets the Basic header (the registry has nothing narrower)", async () => {
  const registry = await startFakeRegistry({ auth: { scheme: "basic", username: "ci", password: "pw" } });
  try {
    const img = registry.addImage("app", { config: Buffer.from("{}"), layers: [], tag: "latest" });
    const source = new RegistryPrefetchSource({ access: () => ({ credentials: { username: "ci", password: "pw" } }) });
    assert.deepEqual(await source.seedAccess(img.reference, img.digest), { authorization: `Basic ${Buffer.from("ci:pw").toString("base64")}` });
  } finally {
    await registry.stop();
  }
});

test("the login's CA goes to the seed with the header (one lookup per registry, as the resolver's)", async () => {
  const asked: string[] = [];
  const client = { pullAuthorization: async () => "Bearer t0ken" } as unknown as RegistryClient;
  const source = new RegistryPrefetchSource({
    access: (r) => {
      asked.push(r);
      return r === "registry.example:5000" ? { ca: Buffer.from("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n") } : undefined;
    },
    client,
  });
  assert.deepEqual(await source.seedAccess("registry.example:5000/app:1", `sha256:${"0".repeat(64)}`), { authorization: "Bearer t0ken", caPem: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n" });
  assert.deepEqual(asked, ["registry.example:5000"]);
  assert.deepEqual(await source.seedAccess("other.example/app:1", `sha256:${"0".repeat(64)}`), { authorization: "Bearer t0ken" });
});
