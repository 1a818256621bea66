// Blob redirects and size limits, against small in-process HTTP servers that behave as the
// distribution spec allows but the Debian registry does not do by default: a blob GET answered
// with 307 to storage elsewhere must not carry the registry's credentials there, nor go over plain
// HTTP off this machine; a blob that is longer than its descriptor stops the download; a registry
// that goes silent (before answering, or in the middle of a body) is REGISTRY_UNAVAILABLE.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isShoalError } from "../../src/base/errors.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { sha256Digest } from "../../src/oci/digest.js";
import { MEDIA_TYPES } from "../../src/oci/manifest.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";

async function serve(handler: http.RequestListener): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return {
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const BLOB = Buffer.from("layer bytes served from storage");
const DESCRIPTOR = { mediaType: MEDIA_TYPES.ociLayerGzip, digest: sha256Digest(BLOB), size: BLOB.length };
const CREDENTIALS = { username: "carol", password: "redirect-secret-4411" };

test("a redirected blob is fetched from the new location without the registry's Authorization", async (t) => {
  const storageHeaders: http.IncomingHttpHeaders[] = [];
  const storage = await serve((req, res) => {
    storageHeaders.push(req.headers);
    res.writeHead(200, { "content-length": BLOB.length }).end(BLOB);
  });
  t.after(storage.close);
  const registryAuth: Array<string | undefined> = [];
  const registry = await serve((req, res) => {
    registryAuth.push(req.headers.authorization);
    if (req.headers.authorization !== `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString("base64")}`) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="test"' }).end();
      return;
    }
    // Another origin (localhost, not 127.0.0.1): a storage backend, as S3-backed registries do.
    res.writeHead(307, { location: `http://localhost:${storage.port}/blob?sig=abc` }).end();
  });
  t.after(registry.close);

  const client = new RegistryClient({ access: () => ({ credentials: CREDENTIALS }) });
  const stream = await client.openBlob(parseImageReference(`127.0.0.1:${registry.port}/app:1`), DESCRIPTOR);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  assert.deepEqual(Buffer.concat(chunks), BLOB);
  assert.equal(registryAuth.at(-1)?.startsWith("Basic "), true, "the registry got the credentials");
  assert.equal(storageHeaders.length, 1);
  assert.equal(storageHeaders[0]!.authorization, undefined, "the storage backend did not");
});

test("a redirect to plain HTTP off this machine is refused", async (t) => {
  const registry = await serve((_req, res) => res.writeHead(307, { location: "http://192.0.2.9/blob" }).end());
  t.after(registry.close);
  await assert.rejects(new RegistryClient().openBlob(parseImageReference(`127.0.0.1:${registry.port}/app:1`), DESCRIPTOR), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /refusing plain HTTP/.test((err as Error).message));
});

test("a blob longer than its descriptor stops the download with DIGEST_MISMATCH and stores nothing", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "shoal-redirect-test-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Chunked (no Content-Length): the client learns the length only by counting.
  const registry = await serve((_req, res) => {
    res.writeHead(200);
    res.write(BLOB);
    res.end(Buffer.alloc(1 << 20, 1));
  });
  t.after(registry.close);
  const store = new ContentStore(join(dir, "content"));
  await store.open();
  const client = new RegistryClient();
  const ref = parseImageReference(`127.0.0.1:${registry.port}/app:1`);
  await assert.rejects(
    store.ensure(DESCRIPTOR.digest, DESCRIPTOR.size, () => client.openBlob(ref, DESCRIPTOR), "image x"),
    (err: unknown) => isShoalError(err, "DIGEST_MISMATCH") && /sent more than the \d+ bytes/.test((err as Error).message),
  );
  assert.equal(await store.has(DESCRIPTOR.digest), false);
  assert.deepEqual(await store.ingesting(), []);
  // With a Content-Length that disagrees with the descriptor, nothing is read at all.
  const lying = await serve((_req, res) => res.writeHead(200, { "content-length": BLOB.length + 1 }).end(Buffer.concat([BLOB, Buffer.from("x")])));
  t.after(lying.close);
  await assert.rejects(client.openBlob(parseImageReference(`127.0.0.1:${lying.port}/app:1`), DESCRIPTOR), (err: unknown) => isShoalError(err, "DIGEST_MISMATCH") && /announced/.test((err as Error).message));
});

test("a registry that stays silent before answering or in the middle of a blob is REGISTRY_UNAVAILABLE", async (t) => {
  const silent = await serve(() => {
    // never answers
  });
  t.after(silent.close);
  const client = new RegistryClient({ idleTimeoutMs: 300 });
  await assert.rejects(client.ping(`127.0.0.1:${silent.port}`), (err: unknown) => isShoalError(err, "REGISTRY_UNAVAILABLE") && /did not answer within 300 ms/.test((err as Error).message));

  const stalling = await serve((_req, res) => {
    res.writeHead(200, { "content-length": BLOB.length });
    res.write(BLOB.subarray(0, 5)); // and then nothing
  });
  t.after(stalling.close);
  const dir = await mkdtemp(join(tmpdir(), "shoal-stall-test-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new ContentStore(join(dir, "content"));
  await store.open();
  const ref = parseImageReference(`127.0.0.1:${stalling.port}/app:1`);
  await assert.rejects(
    store.ensure(DESCRIPTOR.digest, DESCRIPTOR.size, () => client.openBlob(ref, DESCRIPTOR), "image x"),
    (err: unknown) => isShoalError(err, "REGISTRY_UNAVAILABLE") && /stopped sending for 300 ms/.test((err as Error).message),
  );
  assert.deepEqual(await store.ingesting(), []);
  assert.equal(await store.has(DESCRIPTOR.digest), false);
});
