// Explicit bounds on everything the store accepts (TIGER_STYLE): each has a test at the bound and
// one past it. Changing one changes what a cluster accepts, so they live in one place.

/** DESIGN rule 6: a secret holds at most 500 KiB. */
export const MAX_SECRET_BYTES = 500 * 1024;
/** Service, secret, cluster and zone names, and secret targets. */
export const MAX_NAME_CHARS = 64;
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
export const MAX_LABELS = 64;
export const MAX_LABEL_KEY_BYTES = 128;
export const MAX_LABEL_VALUE_BYTES = 1024;
export const MAX_REPLICAS = 10_000;
export const MAX_CONSTRAINTS = 64;
export const MAX_CONSTRAINT_CHARS = 256;
export const MAX_KV_KEY_BYTES = 256;
export const MAX_KV_VALUE_BYTES = 64 * 1024;
/** A proposal is one Raft entry; the raft transport and log are sized for this. */
export const MAX_PROPOSAL_BYTES = 1024 * 1024;
export const MAX_ACTIONS_PER_PROPOSAL = 10_000;
/** Container spec bounds: argv entries, environment entries, secret references. */
export const MAX_CONTAINER_ARGS = 1024;
export const MAX_CONTAINER_ENV = 1024;
export const MAX_CONTAINER_SECRETS = 64;
export const MAX_IMAGE_CHARS = 1024;
/** Bytes of one argv or env string. */
export const MAX_CONTAINER_STRING_BYTES = 64 * 1024;
export const MAX_HOSTNAME_CHARS = 255;
/** Events a watcher may have queued before it is closed with QUEUE_FULL. */
export const DEFAULT_WATCH_QUEUE_EVENTS = 10_000;
/** Workload bounds (issue 9). A memory limit below Docker's minimum cannot even start a shell. */
export const MIN_MEMORY_LIMIT_BYTES = 6 * 1024 * 1024;
export const MAX_MEMORY_LIMIT_BYTES = 2n ** 50n; // 1 PiB: far above any machine, far below int64
/** CPU limits in billionths of a core: 0.01 core to 1,024 cores. */
export const MIN_NANO_CPUS = 10_000_000n;
export const MAX_NANO_CPUS = 1024n * 1_000_000_000n;
/** The kernel's own ceiling on pid_max. */
export const MAX_PIDS_LIMIT = 4_194_304n;
/** Restart delays, update delays and monitor periods: at most one day. */
export const MAX_WORKLOAD_DELAY_MS = 24n * 3600n * 1000n;
/** Restart window: at most 30 days. */
export const MAX_RESTART_WINDOW_MS = 30n * 24n * 3600n * 1000n;
export const MAX_RESTART_ATTEMPTS = 1_000_000;
/** Stop grace period: at most one hour. */
export const MAX_STOP_GRACE_PERIOD_MS = 3600n * 1000n;
export const MAX_WORKDIR_BYTES = 4096;
export const MAX_CAPABILITIES = 64;
/** UIDs and GIDs are 32-bit; 2^32-1 is the kernel's "no ID". */
export const MAX_UNIX_ID = 2 ** 32 - 2;

/** Task logs (`service logs`): a line longer than this is cut into pieces of this size. */
export const MAX_LOG_LINE_BYTES = 16 * 1024;
/** Lines in one PublishLogs or ServiceLogs message. */
export const MAX_LOG_LINES_PER_MESSAGE = 500;
