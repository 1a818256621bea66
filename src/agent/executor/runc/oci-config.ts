// Builds a task's OCI runtime config.json (opencontainers/runtime-spec 1.0, Linux) from the image
// config merged with the service's command, args, env, dir and user, and its limits. Written by hand:
// no maintained Node library generates runtime specs. Defaults follow `runc spec` and Docker's
// (DESIGN.md §7: never privileged; Docker's default capabilities minus cap_drop plus cap_add;
// noNewPrivileges; runc's masked and read-only /proc and /sys paths; own network namespace unless
// host networking was asked for).
import { ShoalError } from "../../../base/errors.js";
import { NetworkMode, type ContainerSpec } from "../../../proto/shoal/v1/objects.js";
import type { ImageConfig } from "../executor.js";

/** Docker's default capability set (moby's oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
] as const;

/** Capabilities `--cap-add` may name (the kernel's list); anything else is refused. */
const KNOWN_CAPABILITIES = new Set([
  ...DEFAULT_CAPABILITIES,
  "CAP_DAC_READ_SEARCH",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_LEASE",
  "CAP_AUDIT_CONTROL",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
]);

/** runc spec's masked paths and read-only paths. */
export const MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"];
export const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const CPU_PERIOD_US = 100_000;
const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const SECRETS_MOUNT_POINT = "/run/secrets";

export interface OciConfigInput {
  taskId: string;
  spec: ContainerSpec;
  image: ImageConfig;
  /** Absolute path of the task's root filesystem. */
  rootfsPath: string;
  /** Absolute cgroup path, e.g. /shoal/<task ID>. */
  cgroupsPath: string;
  /** Host directory of the task's secret files, bind-mounted read-only at /run/secrets. */
  secretsDir: string | undefined;
  uid: number;
  gid: number;
  additionalGids: number[];
}

function normalizeCap(name: string): string {
  const upper = name.trim().toUpperCase();
  return upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
}

/** Docker's default set minus `capDrop` plus `capAdd` ("ALL" allowed in cap_drop). */
export function effectiveCapabilities(capAdd: string[], capDrop: string[]): string[] {
  const drop = capDrop.map(normalizeCap);
  let caps: string[] = drop.includes("CAP_ALL") ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c));
  for (const name of capAdd.map(normalizeCap)) {
    if (name === "CAP_ALL") throw new ShoalError("INVALID_ARGUMENT", "--cap-add ALL is refused: a task never runs privileged");
    if (!KNOWN_CAPABILITIES.has(name)) throw new ShoalError("INVALID_ARGUMENT", `unknown capability ${name}`);
    if (!caps.includes(name)) caps = [...caps, name];
  }
  return caps;
}

/** Docker's rule: the service's command replaces the entrypoint (and drops the image's cmd); its args replace the cmd. */
export function processArgs(spec: Pick<ContainerSpec, "command" | "args">, image: Pick<ImageConfig, "entrypoint" | "cmd">): string[] {
  const entrypoint = spec.command.length > 0 ? spec.command : image.entrypoint;
  const cmd = spec.args.length > 0 ? spec.args : spec.command.length > 0 ? [] : image.cmd;
  const args = [...entrypoint, ...cmd];
  if (args.length === 0 || args[0] === "") throw new ShoalError("INVALID_ARGUMENT", "the task has no command: the image names none and the service gives none");
  return args;
}

/** The image's env with the service's on top (same key: the service wins); PATH defaulted. */
export function mergeEnv(imageEnv: string[], serviceEnv: string[]): string[] {
  const merged = new Map<string, string>();
  for (const entry of [...imageEnv, ...serviceEnv]) {
    const eq = entry.indexOf("=");
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (key === "") continue;
    merged.set(key, eq < 0 ? `${entry}=` : entry);
  }
  if (!merged.has("PATH")) merged.set("PATH", DEFAULT_PATH);
  return [...merged.values()];
}

function limitsOf(spec: ContainerSpec): Record<string, unknown> {
  const limits = spec.limits;
  const resources: Record<string, unknown> = {};
  if (limits !== undefined && limits.memoryBytes > 0n) {
    // Swap as large as memory: no swap beyond the limit (where the kernel accounts swap).
    resources.memory = { limit: Number(limits.memoryBytes), swap: Number(limits.memoryBytes) };
  }
  if (limits !== undefined && limits.nanoCpus > 0n) {
    const quota = Math.max(1000, Math.round((Number(limits.nanoCpus) * CPU_PERIOD_US) / 1e9));
    resources.cpu = { quota, period: CPU_PERIOD_US };
  }
  if (limits !== undefined && limits.pids > 0n) resources.pids = { limit: Number(limits.pids) };
  // Devices: deny everything but the ones runc creates (its defaults are added by runc itself).
  resources.devices = [{ allow: false, access: "rwm" }];
  return resources;
}

export function buildOciConfig(input: OciConfigInput): Record<string, unknown> {
  const { spec, image } = input;
  const caps = effectiveCapabilities(spec.capAdd, spec.capDrop);
  const namespaces = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (spec.network !== NetworkMode.NETWORK_MODE_HOST) namespaces.push({ type: "network" });
  const mounts: Record<string, unknown>[] = [
    { destination: "/proc", type: "proc", source: "proc" },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
    // A writable /tmp even with a read-only root filesystem, as most programs expect one.
    { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", "size=65536k"] },
  ];
  if (input.secretsDir !== undefined) {
    mounts.push({ destination: SECRETS_MOUNT_POINT, type: "bind", source: input.secretsDir, options: ["rbind", "ro", "nosuid", "nodev", "noexec"] });
  }
  if (spec.network === NetworkMode.NETWORK_MODE_HOST) {
    mounts.push({ destination: "/etc/resolv.conf", type: "bind", source: "/etc/resolv.conf", options: ["rbind", "ro", "nosuid", "nodev", "noexec"] });
  }
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false, // runc refuses a terminal without a console socket (CONTAINERS.md)
      user: { uid: input.uid, gid: input.gid, additionalGids: input.additionalGids },
      args: processArgs(spec, image),
      env: mergeEnv(image.env, spec.env),
      cwd: spec.dir !== "" ? spec.dir : image.workingDir !== "" ? image.workingDir : "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: input.rootfsPath, readonly: spec.readOnly },
    hostname: input.taskId.slice(0, 12),
    mounts,
    linux: {
      cgroupsPath: input.cgroupsPath,
      resources: limitsOf(spec),
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}

/** Resolves "UID[:GID]" or a user name (looked up in the rootfs' /etc/passwd and /etc/group texts). */
export function resolveUser(user: string, passwd: string | undefined, group: string | undefined): { uid: number; gid: number; additionalGids: number[] } {
  if (user === "") return { uid: 0, gid: 0, additionalGids: [] };
  const [name, groupName] = user.split(":", 2) as [string, string | undefined];
  let uid: number;
  let gid: number | undefined;
  if (/^\d{1,10}$/.test(name)) {
    uid = Number(name);
    const entry = passwd?.split("\n").map((l) => l.split(":")).find((f) => f[2] === name);
    gid = entry !== undefined ? Number(entry[3]) : uid;
  } else {
    const entry = passwd?.split("\n").map((l) => l.split(":")).find((f) => f[0] === name);
    if (entry === undefined) throw new ShoalError("INVALID_ARGUMENT", `user "${name}" is not in the image's /etc/passwd`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (groupName !== undefined && groupName !== "") {
    if (/^\d{1,10}$/.test(groupName)) gid = Number(groupName);
    else {
      const entry = group?.split("\n").map((l) => l.split(":")).find((f) => f[0] === groupName);
      if (entry === undefined) throw new ShoalError("INVALID_ARGUMENT", `group "${groupName}" is not in the image's /etc/group`);
      gid = Number(entry[2]);
    }
  }
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new ShoalError("INVALID_ARGUMENT", `user "${user}" does not resolve to numeric IDs`);
  return { uid, gid: gid!, additionalGids: [] };
}
