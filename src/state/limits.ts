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
