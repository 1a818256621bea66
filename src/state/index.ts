// Public surface of the replicated object store.
export { ObjectStore, StoreTransaction, SNAPSHOT_FORMAT } from "./store.js";
export type { ApplyContext, ApplyResult, ObjectStoreOptions, PrepareOptions, ValueEntry } from "./store.js";
export type { ChangeKind, StoreChange, StoreEvent, StoreTable, StoreWatch, TableObjects, WatchFilter, WatchOptions } from "./watch.js";
export { parseConstraint, nodeMatches, nodeMatchesService, nodeZone, serviceZone, isValidZone, DEFAULT_ZONE, ZONE_LABEL } from "./constraints.js";
export type { Constraint } from "./constraints.js";
export { redactCluster, redactSecret } from "./redact.js";
export {
  REVOCATION_GRACE_MS,
  isRevocationCollectable,
  lastCertNotAfter,
  nodeSerials,
  withoutExpiredRevocations,
  withRevokedNode,
} from "./revocation.js";
export * from "./limits.js";
export { checkSecretZoneForTask, checkTaskZoneForNode, effectiveZone, isTaskPushed, isTerminalTaskState, taskHoldsSecrets } from "./zone-check.js";
export type { ZoneCheck } from "./zone-check.js";
