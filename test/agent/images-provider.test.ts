// The worker's ImageProvider against a real registry: prepareRootfs of a busybox image built with
// umoci (a base layer, a layer of files, a whiteout layer and an opaque layer) gives a rootfs with
// a working bin/busybox and without what the upper layers removed; a second prepare needs no
// registry; a blob tampered with in the registry's storage is DIGEST_MISMATCH and leaves nothing
// in the content store; a missing image and a stopped registry are refused with their codes.
// Starts child processes: run under the heavy lock.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { RegistryImageProvider } from "../../src/agent/images/image-provider.js";
import { parseManifestOrIndex } from "../../src/oci/manifest.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { ensureContainerTools, findExecutable } from "../../scripts/lib/container-tools.js";
import { startRegistry, type LocalRegistry } from "../../scripts/lib/registry.js";
import { buildTestImage, type TestImage } from "../../scripts/lib/test-image.js";

let registry: LocalRegistry;
let layered: TestImage;
let work: string;

before(async () => {
  await ensureContainerTools();
  work = await mkdtemp(join(tmpdir(), "shoal-images-test-"));
  registry = await startRegistry();
  layered = await buildTestImage({
    registry: registry.host,
    name: "layered",
    cmd: ["sh", "-c", "cat /data/keep"],
    env: ["PATH=/bin", "GREETING=hi"],
    workingDir: "/data",
    user: "65534:65534",
    layers: [
      { files: { "etc/old.conf": "lower", "data/keep": "kept", "data/cache/a": "lower a", "data/cache/sub/b": "lower b" } },
      { whiteouts: ["/etc/old.conf"] },
      { opaqueDir: { path: "/data/cache", files: { fresh: "upper" } } },
    ],
  });
});

after(async () => {
  await registry?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

async function provider(name: string): Promise<{ store: ContentStore; images: RegistryImageProvider; dir: string }> {
  const dir = join(work, name);
  const store = new ContentStore(join(dir, "content"));
  await store.open();
  return { store, images: new RegistryImageProvider({ store, client: new RegistryClient({ idleTimeoutMs: 5000 }) }), dir };
}

function rejectsWith(code: ShoalErrorCode, pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isShoalError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  };
}

test("prepareRootfs gives a rootfs with a working bin/busybox, whiteouts and opaque dirs applied, and the image config", async (t) => {
  const { store, images, dir } = await provider("basic");
  const rootfsDir = join(dir, "tasks", "t1", "rootfs");
  const config = await images.prepareRootfs({ image: layered.reference, digest: layered.digest, rootfsDir });
  t.diagnostic(`pull ${images.lastTimings!.pullMs.toFixed(0)} ms (${images.lastTimings!.bytesPulled} bytes), unpack ${images.lastTimings!.unpackMs.toFixed(0)} ms`);

  assert.deepEqual(config, { entrypoint: [], cmd: ["sh", "-c", "cat /data/keep"], env: ["PATH=/bin", "GREETING=hi"], workingDir: "/data", user: "65534:65534" });
  const busybox = join(rootfsDir, "bin", "busybox");
  assert.ok(statSync(busybox).isFile() && (statSync(busybox).mode & 0o111) !== 0, "bin/busybox is an executable file");
  assert.equal(readlinkSync(join(rootfsDir, "bin", "sh")), "busybox");
  // The bytes survived pull and unpack: the binary runs (it is static) and says what it is.
  assert.equal(execFileSync(busybox, ["echo", "unpacked"], { encoding: "utf8" }), "unpacked\n");
  assert.equal(readFileSync(join(rootfsDir, "data", "keep"), "utf8"), "kept");
  assert.equal(existsSync(join(rootfsDir, "etc", "old.conf")), false, "the whiteout layer removed etc/old.conf");
  assert.ok(existsSync(join(rootfsDir, "etc", "passwd")), "the whiteout removed only its target");
  assert.equal(existsSync(join(rootfsDir, "data", "cache", "a")), false, "the opaque layer hid data/cache/a");
  assert.equal(existsSync(join(rootfsDir, "data", "cache", "sub")), false);
  assert.equal(readFileSync(join(rootfsDir, "data", "cache", "fresh"), "utf8"), "upper");
  for (const name of await namesUnder(rootfsDir)) assert.ok(!name.startsWith(".wh."), `whiteout marker ${name} left in the rootfs`);

  // Everything the image needs is now in the store, verified: a second task needs no registry.
  const manifest = parseManifestOrIndex(readFileSync(store.pathOf(layered.digest)), undefined, "m");
  assert.equal(manifest.kind, "manifest");
  if (manifest.kind === "manifest") {
    assert.equal(manifest.layers.length, 4);
    for (const blob of [manifest.config, ...manifest.layers]) assert.ok(await store.has(blob.digest), `${blob.digest} stored`);
  }
  assert.deepEqual(await store.ingesting(), []);
  await assert.rejects(images.prepareRootfs({ image: layered.reference, digest: layered.digest, rootfsDir }), rejectsWith("FAILED_PRECONDITION", /already exists/));
});

test("the prepared rootfs runs as a runc container (the image's bytes and symlinks are what the runtime needs)", async () => {
  const { images, dir } = await provider("runc");
  const bundle = join(dir, "bundle");
  const rootfsDir = join(bundle, "rootfs");
  const config = await images.prepareRootfs({ image: layered.reference, digest: layered.digest, rootfsDir });
  execFileSync(findExecutable("runc")!, ["spec", "-b", bundle]);
  const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as { process: { terminal: boolean; args: string[]; cwd: string; env: string[] }; root: { path: string; readonly: boolean } };
  spec.process.terminal = false;
  spec.process.args = config.cmd;
  spec.process.cwd = config.workingDir;
  spec.process.env = config.env;
  spec.root = { path: rootfsDir, readonly: true };
  await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
  const id = `shoal-oci-test-${process.pid}`;
  try {
    const out = execFileSync(findExecutable("runc")!, ["run", "-b", bundle, id], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] });
    assert.equal(out, "kept", "the container ran the image's cmd and read a file of an upper layer");
  } finally {
    try {
      execFileSync(findExecutable("runc")!, ["delete", "-f", id], { stdio: "ignore" });
    } catch {
      // already gone
    }
  }
});

async function namesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      out.push(entry.name);
      if (entry.isDirectory()) await walk(join(dir, entry.name));
    }
  };
  await walk(root);
  return out;
}

test("the pull+unpack figure of the test image (busybox + 4 MiB layer), cold and from the content store", async (t) => {
  const sized = await buildTestImage({ registry: registry.host, name: "sized", extraLayerBytes: 4 * 1024 * 1024 });
  const { images, dir } = await provider("figure");
  const cold = join(dir, "cold");
  await images.prepareRootfs({ image: sized.reference, digest: sized.digest, rootfsDir: cold });
  const first = images.lastTimings!;
  assert.equal(statSync(join(cold, "data", "random.bin")).size, 4 * 1024 * 1024);
  await images.prepareRootfs({ image: sized.reference, digest: sized.digest, rootfsDir: join(dir, "warm") });
  const second = images.lastTimings!;
  assert.equal(second.bytesPulled, 0, "the second prepare pulled nothing");
  t.diagnostic(
    JSON.stringify({
      image: "busybox-static + 4 MiB random layer",
      bytesPulled: first.bytesPulled,
      coldPullMs: Math.round(first.pullMs),
      coldUnpackMs: Math.round(first.unpackMs),
      warmPullMs: Math.round(second.pullMs),
      warmUnpackMs: Math.round(second.unpackMs),
    }),
  );
});

test("a blob tampered with in the registry's storage is DIGEST_MISMATCH, and nothing of it stays in the content store", async () => {
  const victim = await buildTestImage({ registry: registry.host, name: "victim", extraLayerBytes: 64 * 1024 });
  const manifest = parseManifestOrIndex((await new RegistryClient().fetchManifest(parseImageReference(victim.reference), victim.digest)).bytes, undefined, "m");
  assert.equal(manifest.kind, "manifest");
  if (manifest.kind !== "manifest") return;
  const layer = manifest.layers[manifest.layers.length - 1]!;
  const hex = layer.digest.slice("sha256:".length);
  const dataFile = join(registry.dataDir, "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
  const original = await readFile(dataFile);
  const tampered = Buffer.from(original);
  tampered[tampered.length >> 1] = tampered[tampered.length >> 1]! ^ 0xff; // same size, other bytes
  await writeFile(dataFile, tampered);
  try {
    const { store, images, dir } = await provider("tampered");
    const rootfsDir = join(dir, "rootfs");
    await assert.rejects(images.prepareRootfs({ image: victim.reference, digest: victim.digest, rootfsDir }), rejectsWith("DIGEST_MISMATCH", new RegExp(`blob: expected ${layer.digest}`)));
    assert.equal(await store.has(layer.digest), false, "the bad blob is not in the store");
    assert.equal(existsSync(store.pathOf(layer.digest)), false);
    assert.deepEqual(await store.ingesting(), [], "no temp file left behind");
    assert.equal(existsSync(rootfsDir), false, "no rootfs made");
    assert.ok(await store.has(manifest.config.digest), "the good blobs fetched before it are kept");
  } finally {
    await writeFile(dataFile, original);
  }
});

test("an unknown manifest digest is IMAGE_NOT_FOUND; a stopped registry is REGISTRY_UNAVAILABLE; neither leaves a rootfs", async () => {
  const { images, dir } = await provider("failures");
  const rootfsDir = join(dir, "rootfs");
  await assert.rejects(images.prepareRootfs({ image: layered.reference, digest: `sha256:${"1".repeat(64)}`, rootfsDir }), rejectsWith("IMAGE_NOT_FOUND", new RegExp(`registry ${registry.host} has no manifest 'sha256:1111`)));
  const gone = await startRegistry();
  await gone.stop();
  await assert.rejects(images.prepareRootfs({ image: `${gone.host}/layered:1`, digest: layered.digest, rootfsDir }), rejectsWith("REGISTRY_UNAVAILABLE", /connection refused/));
  await assert.rejects(images.prepareRootfs({ image: "layered:1", digest: layered.digest, rootfsDir }), rejectsWith("INVALID_ARGUMENT", /no registry host/));
  await assert.rejects(images.prepareRootfs({ image: layered.reference, digest: "sha256:short", rootfsDir }), rejectsWith("INVALID_ARGUMENT", /not sha256/));
  assert.equal(existsSync(rootfsDir), false);
});
