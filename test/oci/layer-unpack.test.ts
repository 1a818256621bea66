// The layer unpacker against hand-made tar streams: ordinary entries (files, modes, links, PAX
// long names), whiteouts and opaque directories across layers, and hostile entries that try to
// write outside the rootfs (`..`, symlinked parents, links, device nodes) or are malformed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isShoalError } from "../../src/base/errors.js";
import { sha256Digest } from "../../src/oci/digest.js";
import { applyTarLayer, unpackLayerBlob } from "../../src/oci/layer-unpack.js";
import { MEDIA_TYPES } from "../../src/oci/manifest.js";
import { buildTar, buildTarGz, chunksOf, type TarSpec } from "./tar-writer.js";

async function scratch(t: { after: (fn: () => Promise<void>) => void }): Promise<{ base: string; rootfs: string }> {
  const base = await mkdtemp(join(tmpdir(), "shoal-unpack-test-"));
  t.after(() => rm(base, { recursive: true, force: true }));
  const rootfs = join(base, "a", "rootfs");
  await mkdir(rootfs, { recursive: true });
  return { base, rootfs };
}

const apply = (rootfs: string, entries: TarSpec[], asRoot = false) => applyTarLayer(rootfs, chunksOf(buildTar(entries)), "test layer", { asRoot });

test("files, directories, modes, symlinks, hard links and PAX long names land in the rootfs", async (t) => {
  const { rootfs } = await scratch(t);
  const longName = `deep/${"n".repeat(150)}.txt`;
  await apply(rootfs, [
    { path: "./", type: "dir" },
    { path: "bin/", type: "dir" },
    { path: "bin/tool", content: "#!/bin/sh\n", mode: 0o755 },
    { path: "bin/alias", type: "symlink", linkTarget: "tool" },
    { path: "bin/hard", type: "hardlink", linkTarget: "bin/tool" },
    { path: "/etc/abs-path", content: "leading slash is relative to the rootfs" },
    { path: longName, content: "long", pax: true },
    { path: "etc/secret", content: "s", mode: 0o600 },
  ]);
  assert.equal(readFileSync(join(rootfs, "bin/tool"), "utf8"), "#!/bin/sh\n");
  assert.equal(statSync(join(rootfs, "bin/tool")).mode & 0o777, 0o755);
  assert.equal(statSync(join(rootfs, "etc/secret")).mode & 0o777, 0o600);
  assert.equal(readlinkSync(join(rootfs, "bin/alias")), "tool");
  assert.equal(statSync(join(rootfs, "bin/hard")).ino, statSync(join(rootfs, "bin/tool")).ino);
  assert.equal(readFileSync(join(rootfs, "etc/abs-path"), "utf8"), "leading slash is relative to the rootfs");
  assert.equal(readFileSync(join(rootfs, longName), "utf8"), "long");
});

test("a whiteout removes what a lower layer had; an opaque whiteout empties a directory of lower content only", async (t) => {
  const { rootfs } = await scratch(t);
  await apply(rootfs, [
    { path: "etc/old.conf", content: "old" },
    { path: "etc/keep.conf", content: "keep" },
    { path: "var/cache/a", content: "a" },
    { path: "var/cache/sub/b", content: "b" },
    { path: "opt/tree/x", content: "x" },
  ]);
  await apply(rootfs, [
    { path: "etc/.wh.old.conf" },
    { path: "opt/.wh.tree" },
    { path: "var/cache/fresh", content: "new in this layer" },
    { path: "var/cache/.wh..wh..opq" },
    { path: "var/cache/after", content: "also new" },
  ]);
  assert.equal(existsSync(join(rootfs, "etc/old.conf")), false, "the whiteout removed etc/old.conf");
  assert.equal(existsSync(join(rootfs, "etc/.wh.old.conf")), false, "whiteout files are not written");
  assert.equal(readFileSync(join(rootfs, "etc/keep.conf"), "utf8"), "keep");
  assert.equal(existsSync(join(rootfs, "opt/tree")), false, "a whiteout of a directory removes it whole");
  assert.equal(existsSync(join(rootfs, "var/cache/a")), false, "opaque: lower content gone");
  assert.equal(existsSync(join(rootfs, "var/cache/sub")), false);
  assert.equal(readFileSync(join(rootfs, "var/cache/fresh"), "utf8"), "new in this layer");
  assert.equal(readFileSync(join(rootfs, "var/cache/after"), "utf8"), "also new");
});

test("an entry '../../etc/x' is refused and nothing is written outside the rootfs", async (t) => {
  const { base, rootfs } = await scratch(t);
  await assert.rejects(apply(rootfs, [{ path: "../../etc/x", content: "escaped" }]), (err: unknown) => {
    assert.ok(isShoalError(err, "INVALID_ARGUMENT"), String(err));
    assert.match((err as Error).message, /'\.\.\/\.\.\/etc\/x' escapes the root filesystem/);
    return true;
  });
  assert.equal(existsSync(join(base, "etc")), false);
  await assert.rejects(apply(rootfs, [{ path: "ok/../../x", content: "escaped" }]), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT"));
  assert.equal(existsSync(join(base, "a", "x")), false);
});

test("symlinks already in the rootfs are followed only inside it", async (t) => {
  const { base, rootfs } = await scratch(t);
  const hostEtcProbe = `/etc/shoal-unpack-probe-${process.pid}`;
  await apply(rootfs, [
    { path: "up", type: "symlink", linkTarget: "../../outside" },
    { path: "abs", type: "symlink", linkTarget: "/etc" },
    { path: "f", type: "symlink", linkTarget: hostEtcProbe },
  ]);
  await apply(rootfs, [
    { path: "up/x", content: "through a relative link" },
    { path: `abs/${hostEtcProbe.slice(5)}`, content: "through an absolute link" },
    { path: "f", content: "replaces the link, not its target" },
  ]);
  assert.equal(existsSync(join(base, "outside")), false, "the relative link's '..' stopped at the rootfs");
  assert.equal(readFileSync(join(rootfs, "outside/x"), "utf8"), "through a relative link");
  assert.equal(existsSync(hostEtcProbe), false, "the host's /etc was not written");
  assert.equal(readFileSync(join(rootfs, "etc", hostEtcProbe.slice(5)), "utf8"), "through an absolute link");
  assert.ok(lstatSync(join(rootfs, "f")).isFile(), "a file entry over a symlink replaces the symlink");
});

test("hard links must point inside the rootfs, to something that exists and is not a directory", async (t) => {
  const { rootfs } = await scratch(t);
  await assert.rejects(apply(rootfs, [{ path: "pw", type: "hardlink", linkTarget: "../../etc/passwd" }]), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /escapes/.test((err as Error).message));
  // /etc/passwd of the host is not "etc/passwd" of this empty rootfs.
  await assert.rejects(apply(rootfs, [{ path: "pw", type: "hardlink", linkTarget: "/etc/passwd" }]), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /does not exist in the rootfs/.test((err as Error).message));
  await assert.rejects(apply(rootfs, [{ path: "d/", type: "dir" }, { path: "dl", type: "hardlink", linkTarget: "d" }]), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /directory/.test((err as Error).message));
  assert.equal(existsSync(join(rootfs, "pw")), false);
});

test("a device node is refused when the agent is not root", async (t) => {
  const { rootfs } = await scratch(t);
  await assert.rejects(apply(rootfs, [{ path: "dev/kmem", type: "char" }], false), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /device node/.test((err as Error).message));
  assert.equal(existsSync(join(rootfs, "dev/kmem")), false);
});

test("as root, device nodes and fifos are made with their numbers, and ownership is applied", { skip: process.getuid?.() !== 0 ? "needs root (the non-root refusal is tested above)" : false }, async (t) => {
  const { rootfs } = await scratch(t);
  await apply(rootfs, [
    { path: "dev/null", type: "char", mode: 0o666 },
    { path: "run/pipe", type: "fifo", mode: 0o600 },
    { path: "home/owned", content: "x", uid: 1234, gid: 4321 },
  ], true);
  const dev = statSync(join(rootfs, "dev/null"));
  assert.ok(dev.isCharacterDevice());
  assert.equal(dev.rdev, (1 << 8) | 3, "major 1, minor 3 as the tar writer sets");
  assert.ok(lstatSync(join(rootfs, "run/pipe")).isFIFO());
  const owned = statSync(join(rootfs, "home/owned"));
  assert.deepEqual([owned.uid, owned.gid], [1234, 4321]);
});

test("a header with a wrong checksum or an archive cut short is refused", async (t) => {
  const { rootfs } = await scratch(t);
  const tar = buildTar([{ path: "a", content: "hello" }]);
  const bad = Buffer.from(tar);
  bad[0] = "b".charCodeAt(0);
  await assert.rejects(applyTarLayer(rootfs, chunksOf(bad), "layer", { asRoot: false }), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /checksum/.test((err as Error).message));
  const big = buildTar([{ path: "big", content: Buffer.alloc(2000, 7) }]);
  await assert.rejects(applyTarLayer(rootfs, chunksOf(big.subarray(0, 1500)), "layer", { asRoot: false }), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /ends inside an entry's data/.test((err as Error).message));
  await assert.rejects(applyTarLayer(rootfs, chunksOf(big.subarray(0, 300)), "layer", { asRoot: false }), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /middle of a block/.test((err as Error).message));
});

test("a layer that ends right after its last entry's data (no padding, no end blocks, as umoci 0.4.7 writes) is complete", async (t) => {
  const { rootfs } = await scratch(t);
  const tar = buildTar([{ path: "a", content: "first" }, { path: "b", content: "hello" }]);
  await applyTarLayer(rootfs, chunksOf(tar.subarray(0, 512 * 3 + 5)), "layer", { asRoot: false });
  assert.equal(readFileSync(join(rootfs, "b"), "utf8"), "hello");
});

test("a gzip layer blob is unpacked and its uncompressed bytes are checked against the diff_id", async (t) => {
  const { base, rootfs } = await scratch(t);
  const entries: TarSpec[] = [{ path: "hello.txt", content: "hi" }];
  const blob = join(base, "layer.tgz");
  await writeFile(blob, buildTarGz(entries));
  const diffId = sha256Digest(buildTar(entries));
  await unpackLayerBlob(rootfs, blob, { mediaType: MEDIA_TYPES.ociLayerGzip, digest: sha256Digest(readFileSync(blob)), diffId }, "image x");
  assert.equal(readFileSync(join(rootfs, "hello.txt"), "utf8"), "hi");
  const other = join(base, "other-rootfs");
  await mkdir(other);
  await assert.rejects(
    unpackLayerBlob(other, blob, { mediaType: MEDIA_TYPES.ociLayerGzip, digest: "sha256:" + "0".repeat(64), diffId: "sha256:" + "1".repeat(64) }, "image x"),
    (err: unknown) => isShoalError(err, "DIGEST_MISMATCH") && /diff_id/.test((err as Error).message),
  );
  await assert.rejects(unpackLayerBlob(other, blob, { mediaType: MEDIA_TYPES.ociLayerZstd, digest: "sha256:" + "0".repeat(64) }, "image x"), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /not supported/.test((err as Error).message));
});
