// Applies image layers (tar, gzip or not) to a root filesystem, as the OCI image spec's
// "Applying Changesets" says: entries in order, `.wh.NAME` removes NAME from the layers below,
// `.wh..wh..opq` empties a directory of what the layers below put there.
//
// Written in TypeScript rather than calling `umoci unpack`: umoci needs an OCI layout with a
// tagged index and writes a whole bundle (config.json, mtree, umoci.json) that the runc executor
// would then rewrite; it also clamps an escaping path into the rootfs where Shoal wants to refuse
// the layer and say so. Here the rules an untrusted layer meets are in one file and tested:
// - an entry with a `..` component is refused (no clamping: a layer that tries is hostile);
// - symlinks already in the rootfs are followed only inside it (an absolute target means the
//   rootfs's root, `..` stops at it), so `lib -> /etc` cannot make `lib/x` write the host's /etc;
// - an entry never writes through an existing symlink: the link is replaced, files open O_EXCL;
// - a hard link must point to an existing non-directory inside the rootfs;
// - device nodes only when the agent is root (a non-root agent could not make them anyway, and
//   silently dropping them would hide that the image is not what it says).
// Ownership is applied only as root; as non-root, directories keep owner rwx so later layers can
// still change them.
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream";
import { promisify } from "node:util";
import { createGunzip } from "node:zlib";
import type { Stats } from "node:fs";
import { ShoalError } from "../base/errors.js";
import { checkDigest, DigestVerifier } from "./digest.js";
import { MEDIA_TYPES } from "./manifest.js";
import { readTar, type TarEntry } from "./tar-reader.js";

const execFileAsync = promisify(execFile);
const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_WHITEOUT = ".wh..wh..opq";
const MAX_SYMLINK_HOPS = 40;

export interface UnpackOptions {
  /** Whether ownership and device nodes are applied; defaults to whether this process is root. */
  asRoot?: boolean;
}

function refuse(what: string, entryPath: string, why: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", `${what}: entry '${entryPath.slice(0, 200)}' ${why}; the layer is refused`);
}

/** The entry's path as components under the rootfs; refuses `..` anywhere. */
export function entryComponents(entryPath: string, what: string): string[] {
  const parts = entryPath.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw refuse(what, entryPath, "escapes the root filesystem ('..')");
  return parts;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * The host path of `components` under `root`, following symlinks found on the way as if `root`
 * were `/`. As `directory`, every component must be (or is made) a directory; otherwise the last
 * component is neither followed nor created, and a missing parent means the path does not exist.
 */
async function resolveInRoot(root: string, components: string[], opts: { directory: boolean }, what: string, entryPath: string): Promise<string> {
  let resolved: string[] = [];
  let todo = [...components];
  let hops = 0;
  while (todo.length > 0) {
    const component = todo.shift()!;
    if (component === "" || component === ".") continue;
    if (component === "..") {
      resolved.pop(); // at the root, `..` is the root
      continue;
    }
    const isLast = todo.length === 0 && !opts.directory;
    const hostPath = join(root, ...resolved, component);
    const st = await lstatOrUndefined(hostPath);
    if (st?.isSymbolicLink() && !isLast) {
      if (++hops > MAX_SYMLINK_HOPS) throw refuse(what, entryPath, `goes through more than ${MAX_SYMLINK_HOPS} symlinks`);
      const target = await readlink(hostPath);
      if (target.startsWith("/")) resolved = [];
      todo = [...target.split("/"), ...todo];
      continue;
    }
    if (!isLast) {
      if (st === undefined) {
        if (!opts.directory) return join(root, ...resolved, component, ...todo);
        await mkdir(hostPath, { mode: 0o755 });
      } else if (!st.isDirectory()) {
        throw refuse(what, entryPath, `needs '${[...resolved, component].join("/")}' to be a directory, and a lower layer made it something else`);
      }
    }
    resolved.push(component);
  }
  return join(root, ...resolved);
}

/** Applies one decompressed tar stream to `rootfs`. */
export async function applyTarLayer(rootfs: string, tar: AsyncIterable<Buffer>, what: string, opts: UnpackOptions = {}): Promise<void> {
  const asRoot = opts.asRoot ?? process.getuid?.() === 0;
  /** Host paths this layer created: an opaque whiteout keeps them. */
  const createdHere = new Set<string>();
  for await (const { entry, body } of readTar(tar, what)) {
    const components = entryComponents(entry.path, what);
    if (components.length === 0) continue; // the archive's "./": the rootfs itself stays as made
    const name = components[components.length - 1]!;
    const parent = await resolveInRoot(rootfs, components.slice(0, -1), { directory: true }, what, entry.path);
    if (name === OPAQUE_WHITEOUT) {
      for (const child of await readdir(parent)) {
        const childPath = join(parent, child);
        if (!createdHere.has(childPath)) await rm(childPath, { recursive: true, force: true });
      }
      continue;
    }
    if (name.startsWith(WHITEOUT_PREFIX)) {
      const hidden = name.slice(WHITEOUT_PREFIX.length);
      if (hidden === "" || hidden === "." || hidden === "..") throw refuse(what, entry.path, "is a whiteout of nothing");
      await rm(join(parent, hidden), { recursive: true, force: true });
      continue;
    }
    const target = join(parent, name);
    await writeEntry(rootfs, target, entry, body, what, asRoot);
    createdHere.add(target);
  }
}

async function removeForReplacement(target: string, existing: Stats | undefined, newIsDir: boolean): Promise<void> {
  if (existing === undefined) return;
  if (existing.isDirectory()) {
    if (newIsDir) return; // merge: a directory entry over a directory keeps what is inside
    await rm(target, { recursive: true, force: true });
  } else {
    await unlink(target);
  }
}

async function writeEntry(rootfs: string, target: string, entry: TarEntry, body: AsyncIterable<Buffer>, what: string, asRoot: boolean): Promise<void> {
  const existing = await lstatOrUndefined(target);
  await removeForReplacement(target, existing, entry.type === "dir");
  switch (entry.type) {
    case "dir":
      if (existing === undefined || !existing.isDirectory()) await mkdir(target, { mode: 0o700 });
      break;
    case "file": {
      // "wx": O_CREAT|O_EXCL, which never follows a symlink at `target`.
      const handle = await open(target, "wx", 0o600);
      try {
        for await (const chunk of body) await handle.write(chunk);
      } finally {
        await handle.close();
      }
      break;
    }
    case "symlink":
      await symlink(entry.linkTarget, target);
      break;
    case "hardlink": {
      const source = await resolveInRoot(rootfs, entryComponents(entry.linkTarget, what), { directory: false }, what, entry.path);
      const st = await lstatOrUndefined(source);
      if (st === undefined) throw refuse(what, entry.path, `is a hard link to '${entry.linkTarget.slice(0, 200)}', which does not exist in the rootfs`);
      if (st.isDirectory()) throw refuse(what, entry.path, "is a hard link to a directory");
      await link(source, target);
      return; // a hard link shares the source's inode: its metadata is the source's
    }
    case "char":
    case "block":
    case "fifo":
      if (entry.type !== "fifo" && !asRoot) throw refuse(what, entry.path, "is a device node, which only an agent running as root may create");
      await execFileAsync("mknod", ["-m", (entry.mode & 0o777).toString(8), target, entry.type === "fifo" ? "p" : entry.type === "char" ? "c" : "b", ...(entry.type === "fifo" ? [] : [String(entry.devMajor), String(entry.devMinor)])]);
      break;
  }
  await applyMetadata(target, entry, asRoot);
}

async function applyMetadata(target: string, entry: TarEntry, asRoot: boolean): Promise<void> {
  if (asRoot) await lchown(target, entry.uid, entry.gid);
  if (entry.type === "symlink") {
    await lutimes(target, entry.mtimeSec, entry.mtimeSec);
    return;
  }
  // chmod after chown: chown clears set-uid/set-gid bits.
  const mode = entry.type === "dir" && !asRoot ? entry.mode | 0o700 : asRoot ? entry.mode : entry.mode & 0o777;
  await chmod(target, mode);
  await utimes(target, entry.mtimeSec, entry.mtimeSec);
}

const GZIP_MEDIA_TYPES = new Set<string>([MEDIA_TYPES.ociLayerGzip, MEDIA_TYPES.dockerLayerGzip]);
const PLAIN_MEDIA_TYPES = new Set<string>([MEDIA_TYPES.ociLayer, "application/vnd.docker.image.rootfs.diff.tar"]);

/**
 * Applies the layer blob at `blobPath` (already verified against its digest) to `rootfs`,
 * decompressing by media type and checking the uncompressed bytes against `diffId` when given.
 */
export async function unpackLayerBlob(rootfs: string, blobPath: string, layer: { mediaType: string; digest: string; diffId?: string }, what: string, opts: UnpackOptions = {}): Promise<void> {
  const gzip = GZIP_MEDIA_TYPES.has(layer.mediaType);
  if (!gzip && !PLAIN_MEDIA_TYPES.has(layer.mediaType)) {
    throw new ShoalError("INVALID_ARGUMENT", `${what}: layer media type '${layer.mediaType.slice(0, 100)}' is not supported (plain or gzip tar only)`);
  }
  const raw = createReadStream(blobPath);
  const source = gzip ? pipeline(raw, createGunzip(), () => {}) : raw;
  const verifier = new DigestVerifier();
  async function* hashed(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        verifier.update(chunk);
        yield chunk;
      }
    } catch (err) {
      if (err instanceof ShoalError) throw err;
      throw new ShoalError("INVALID_ARGUMENT", `${what}: layer ${layer.digest} does not decompress (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  try {
    await applyTarLayer(rootfs, hashed(), `${what}: layer ${layer.digest}`, opts);
  } finally {
    source.destroy();
  }
  if (layer.diffId !== undefined) checkDigest(layer.diffId, verifier.digest(), `${what}: uncompressed layer ${layer.digest} (its diff_id)`);
}
