// Linux capability names as services carry them (`--cap-add`, `--cap-drop`): one spelling
// ("CAP_NET_ADMIN") in the store, so the CLI, the control API and the runc executor agree.
import { ShoalError } from "../base/errors.js";

/** Every capability of Linux 6.x (capability.h), by its canonical name. */
export const LINUX_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
  "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
  "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
  "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
  "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];
const KNOWN = new Set(LINUX_CAPABILITIES);

/** `ALL` in `cap_drop` drops every capability (then `cap_add` names the few the task needs). */
export const ALL_CAPABILITIES = "ALL";

/**
 * The canonical name of a capability as a user may write it ("net_admin", "NET_ADMIN",
 * "CAP_NET_ADMIN", "all"); INVALID_ARGUMENT for anything that is not one.
 */
export function normalizeCapability(text: string, flag: string): string {
  const upper = text.trim().toUpperCase();
  if (upper === ALL_CAPABILITIES) return ALL_CAPABILITIES;
  const name = upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
  if (!KNOWN.has(name)) {
    throw new ShoalError("INVALID_ARGUMENT", `${flag} ${JSON.stringify(text.slice(0, 64))} is not a Linux capability: use a name such as NET_ADMIN or CAP_NET_BIND_SERVICE`);
  }
  return name;
}
