// Builds a small OCI image from busybox-static with umoci (no container engine) and pushes it with
// skopeo to a registry: /bin/busybox plus the applet symlinks tests use, a config (cmd, env, …),
// optionally a layer of N random bytes and further layers of files, whiteouts or opaque dirs.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { ensureContainerTools, findExecutable } from "./container-tools.js";
import type { RegistryUser } from "./registry.js";

const execFileAsync = promisify(execFile);

export const BUSYBOX_APPLETS = ["sh", "echo", "sleep", "cat", "id", "nc", "ls", "head", "dd", "test", "env", "true", "false", "kill", "rm", "mkdir"];

export interface TestImageLayer {
  /** Files to add (path inside the image → content); directories are made as needed. */
  files?: Record<string, string | Buffer>;
  /** Paths to remove (each a whiteout entry in this layer). */
  whiteouts?: string[];
  /** Replaces the directory with `files` only: an opaque whiteout hides what lower layers put in it. */
  opaqueDir?: { path: string; files: Record<string, string> };
}

export interface BuildTestImageOptions {
  /** `host:port` of the registry. */
  registry: string;
  name?: string;
  tag?: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  /** A layer holding /data/random.bin of this many random bytes. */
  extraLayerBytes?: number;
  layers?: TestImageLayer[];
  /** For a registry behind auth. */
  credentials?: RegistryUser;
}

export interface TestImage {
  /** `host:port/name:tag`. */
  reference: string;
  /** The pushed manifest's digest. */
  digest: string;
  /** `host:port/name@digest`. */
  pinned: string;
  registry: string;
  name: string;
  tag: string;
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(findExecutable(cmd) ?? cmd, args, { cwd, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${(e.stderr ?? e.message).slice(-2000)}`);
  }
}

/** The busybox binary to copy, which must be static (a dynamic one cannot run in the image). */
async function staticBusybox(): Promise<string> {
  for (const candidate of ["/bin/busybox", "/usr/bin/busybox", findExecutable("busybox")]) {
    if (candidate === undefined) continue;
    try {
      if (isStaticElf64(await readFile(candidate))) return candidate;
    } catch {
      // next
    }
  }
  throw new Error("no static busybox found: apt-get install -y busybox-static");
}

/** An ELF64 little-endian executable with no PT_INTERP program header (no dynamic loader). */
function isStaticElf64(elf: Buffer): boolean {
  if (elf.length < 64 || elf.subarray(0, 4).toString("latin1") !== "\x7fELF" || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length) return false;
    if (elf.readUInt32LE(at) === 3) return false; // PT_INTERP
  }
  return true;
}

async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const target = join(root, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content);
  }
}

export async function buildTestImage(opts: BuildTestImageOptions): Promise<TestImage> {
  await ensureContainerTools();
  const name = opts.name ?? "shoal-test";
  const tag = opts.tag ?? "1";
  const work = await mkdtemp(join(tmpdir(), "shoal-image-"));
  try {
    const layout = join(work, "oci");
    const image = `${layout}:${tag}`;
    await run("umoci", ["init", "--layout", layout], work);
    await run("umoci", ["new", "--image", image], work);

    const base = join(work, "base");
    await mkdir(join(base, "bin"), { recursive: true });
    await copyFile(await staticBusybox(), join(base, "bin", "busybox"));
    await chmod(join(base, "bin", "busybox"), 0o755);
    for (const applet of BUSYBOX_APPLETS) await symlink("busybox", join(base, "bin", applet));
    for (const dir of ["tmp", "etc", "proc", "sys", "dev", "run"]) await mkdir(join(base, dir), { recursive: true });
    await writeFile(join(base, "etc", "passwd"), "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n");
    await run("umoci", ["insert", "--image", image, "--no-history", base, "/"], work);

    if (opts.extraLayerBytes !== undefined && opts.extraLayerBytes > 0) {
      const extra = join(work, "extra");
      await mkdir(extra);
      await writeFile(join(extra, "random.bin"), randomBytes(opts.extraLayerBytes));
      await run("umoci", ["insert", "--image", image, "--no-history", join(extra, "random.bin"), "/data/random.bin"], work);
    }
    for (const [i, layer] of (opts.layers ?? []).entries()) {
      if (layer.files !== undefined) {
        const dir = join(work, `layer-${i}`);
        await writeTree(dir, layer.files);
        await run("umoci", ["insert", "--image", image, "--no-history", dir, "/"], work);
      }
      for (const path of layer.whiteouts ?? []) await run("umoci", ["insert", "--image", image, "--no-history", "--whiteout", path], work);
      if (layer.opaqueDir !== undefined) {
        const dir = join(work, `opaque-${i}`);
        await mkdir(dir, { recursive: true });
        await writeTree(dir, layer.opaqueDir.files);
        await run("umoci", ["insert", "--image", image, "--no-history", "--opaque", dir, layer.opaqueDir.path], work);
      }
    }

    const config = ["config", "--image", image, "--no-history", "--os", "linux", "--architecture", "amd64"];
    for (const c of opts.cmd ?? ["sh", "-c", "echo hello from the shoal test image"]) config.push("--config.cmd", c);
    for (const e of opts.entrypoint ?? []) config.push("--config.entrypoint", e);
    for (const e of opts.env ?? ["PATH=/bin"]) config.push("--config.env", e);
    if (opts.workingDir !== undefined) config.push("--config.workingdir", opts.workingDir);
    if (opts.user !== undefined) config.push("--config.user", opts.user);
    await run("umoci", config, work);

    const digestFile = join(work, "digest");
    const copy = ["copy", "--quiet", "--dest-tls-verify=false", "--digestfile", digestFile];
    if (opts.credentials !== undefined) copy.push("--dest-creds", `${opts.credentials.username}:${opts.credentials.password}`);
    copy.push(`oci:${image}`, `docker://${opts.registry}/${name}:${tag}`);
    await run("skopeo", copy, work);
    const digest = (await readFile(digestFile, "utf8")).trim();
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new Error(`skopeo wrote no digest for ${name}:${tag} (got '${digest.slice(0, 80)}')`);
    return { reference: `${opts.registry}/${name}:${tag}`, digest, pinned: `${opts.registry}/${name}@${digest}`, registry: opts.registry, name, tag };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
