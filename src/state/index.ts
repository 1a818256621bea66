// Public surface of the replicated object store.
export { ObjectStore, StoreTransaction, SNAPSHOT_FORMAT } from "./store.js";
export type { ApplyContext, ApplyResult, ObjectStoreOptions, PrepareOptions, ValueEntry } from "./store.js";
export type { ChangeKind, StoreChange, StoreEvent, StoreTable, StoreWatch, TableObjects, WatchFilter, WatchOptions } from "./watch.js";
export { parseConstraint, matchConstraint, nodeMatches, nodeMatchesService, nodeZone, serviceZone, isValidZone, DEFAULT_ZONE, ZONE_LABEL } from "./constraints.js";
export type { Constraint } from "./constraints.js";
export { redactCluster, redactRegistryAuth, redactSecret } from "./redact.js";
export {
  REVOCATION_GRACE_MS,
  isRevocationCollectable,
  lastCertNotAfter,
  nodeSerials,
  withoutExpiredRevocations,
  withRevokedNode,
} from "./revocation.js";
export * from "./limits.js";
export { nodeOffersExecutor, nodeStateName, nodeTakesNewTasks, placementFits, taskFitsNode, taskPlacement, taskZone } from "./placement.js";
export type { PlacementFit, TaskPlacement } from "./placement.js";
export { endedByItself, isTerminalState, taskStateName } from "./task-state.js";
export type { LeaderLoop, LeaderLoopFactory, LoopContext, LoopLogger, LoopProposal, StoreView } from "./loop-context.js";
export { ReconcileTrigger } from "./reconcile-trigger.js";
export type { ReconcileTriggerOptions } from "./reconcile-trigger.js";
export { checkSecretZoneForTask, checkTaskZoneForNode, effectiveZone, isTaskPushed, taskHoldsSecrets } from "./zone-check.js";
export type { ZoneCheck } from "./zone-check.js";
export { DEFAULT_CONFLICT_ATTEMPTS, retryOnVersionConflict } from "./conflict-retry.js";
export { rootRotationProgress, isNodeDown, type RootRotationProgress } from "./root-rotation.js";
export { deriveEvents, resetEvent, EVENT_TYPES, type DeriveContext, type EventType, type JoinTokenRole } from "./cluster-events.js";
