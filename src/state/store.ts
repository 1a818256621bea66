// The managers' replicated object store (their Raft state machine): objects in memory, changed only
// by `apply` of committed proposals, which `prepare` builds from checked transactions.
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { ShoalError, isShoalError } from "../base/errors.js";
import { systemClock, type Clock } from "../base/clock.js";
import { isValidId, newId } from "../base/ids.js";
import type { Cluster, Node, RevocationList, Secret, Service, Task } from "../proto/shoal/v1/objects.js";
import { KeyValue, StoreAction, StoreActionKind, StoreProposal, StoreSnapshot } from "../proto/shoal/v1/store.js";
import { deepCopy, deepFreeze } from "./copies.js";
import { MAX_ACTIONS_PER_PROPOSAL, MAX_PROPOSAL_BYTES } from "./limits.js";
import { redactSecret } from "./redact.js";
import { withoutExpiredRevocations, withRevokedNode } from "./revocation.js";
import { actionTarget, canonicalize, changeView, Staging, StoreState, TABLES, versionOf } from "./staging.js";
import { StoreWatcher, type StoreChange, type StoreEvent, type StoreTable, type StoreWatch, type TableObjects, type WatchFilter, type WatchOptions } from "./watch.js";

/** Snapshot format written by this code; restore refuses others. */
export const SNAPSHOT_FORMAT = 1;

export interface ObjectStoreOptions {
  /** Source of the timestamp `prepare` writes into proposals (apply never reads a clock). */
  clock?: Clock;
}

export interface PrepareOptions {
  /** ID to put in the proposal, so the proposer can recognise its result; a new ID by default. */
  proposalId?: string;
  /** Timestamp for the proposal; the store's clock by default. */
  now?: Date;
}

export interface ApplyContext {
  /** Raft index of the entry; becomes the version of every object the proposal writes. */
  index: number;
}

export type ApplyResult =
  | { ok: true; index: number; proposalId: string; changes: StoreChange[] }
  | { ok: false; index: number; proposalId: string; error: ShoalError };

export interface ValueEntry {
  value: Buffer;
  /** Raft index of the last write. */
  version: bigint;
}

function corrupt(message: string, cause?: unknown): ShoalError {
  return new ShoalError("STORE_CORRUPT", message, cause === undefined ? undefined : { cause });
}

function sortedValues<T>(map: Map<string, T>): T[] {
  return [...map.keys()].sort().map((key) => map.get(key)!);
}

function byId<T extends { id: string }>(objects: Iterable<T>): T[] {
  return [...objects].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

// One writer reused for the small encodings of every write (actions, proposals): a fresh
// BinaryWriter starts at 128 bytes and reallocates twice for a 300-byte proposal, which showed in
// the leader's profile. finish() copies the bytes out and rewinds; a writer that grew past
// SCRATCH_KEEP_BYTES is dropped so one big proposal does not pin its buffer.
const SCRATCH_KEEP_BYTES = 64 * 1024;
let scratch = new BinaryWriter();

function encodeScratch(encode: (writer: BinaryWriter) => BinaryWriter): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = encode(scratch).finish();
  } catch (err) {
    scratch = new BinaryWriter(); // it may hold half a message
    throw err;
  }
  if (bytes.length > SCRATCH_KEEP_BYTES) scratch = new BinaryWriter();
  return bytes;
}

/**
 * Builds one proposal. Each call checks its action against the state as the earlier actions left
 * it and throws (ShoalError) if a rule refuses it; reads see the transaction's own writes.
 */
export class StoreTransaction {
  /** Encoded actions, in order, exactly as they go into the proposal (copied in verbatim). */
  readonly encodedActions: Uint8Array[] = [];
  private encodedBytes = 0;

  constructor(private readonly staging: Staging) {}

  private add(action: StoreAction): void {
    if (this.encodedActions.length >= MAX_ACTIONS_PER_PROPOSAL) {
      throw new ShoalError("PROPOSAL_TOO_LARGE", `a transaction holds at most ${MAX_ACTIONS_PER_PROPOSAL} actions; split it`);
    }
    // Round-trip through the wire form, so the checks here see exactly what apply will see, and
    // later changes to the caller's object cannot leak into the proposal.
    const bytes = encodeScratch((w) => StoreAction.encode(action, w));
    // Exact cost inside the proposal (field tag + length prefix + body): this is a lower bound of the
    // final size, so it fails early without ever refusing a proposal that fits.
    this.encodedBytes += 1 + varintBytes(bytes.length) + bytes.length;
    if (this.encodedBytes > MAX_PROPOSAL_BYTES) {
      throw new ShoalError("PROPOSAL_TOO_LARGE", `the transaction is larger than ${MAX_PROPOSAL_BYTES} bytes; split it into smaller ones`);
    }
    // The checks run on a decoded copy; the proposal carries the bytes themselves, so each action
    // is encoded once and decoded once (staging may keep the copy it is given).
    this.staging.stage(StoreAction.decode(bytes));
    this.encodedActions.push(bytes);
  }

  private write(kind: StoreActionKind, target: Partial<StoreAction>): void {
    // fromPartial fills unset fields, so partial objects from callers encode like full ones.
    this.add(StoreAction.fromPartial({ kind, ...target }));
  }

  createNode(node: Node): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_CREATE, { node });
  }
  /** `node.meta.version` must be the version last read (compare-and-set). */
  updateNode(node: Node): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_UPDATE, { node });
  }
  removeNode(nodeId: string, options: { version?: bigint } = {}): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_REMOVE, { node: removal(nodeId, options.version) as Node });
  }
  createService(service: Service): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_CREATE, { service });
  }
  updateService(service: Service): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_UPDATE, { service });
  }
  removeService(serviceId: string, options: { version?: bigint } = {}): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_REMOVE, { service: removal(serviceId, options.version) as Service });
  }
  createTask(task: Task): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_CREATE, { task });
  }
  updateTask(task: Task): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_UPDATE, { task });
  }
  removeTask(taskId: string, options: { version?: bigint } = {}): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_REMOVE, { task: removal(taskId, options.version) as Task });
  }
  /** The store sets `digest` and `sizeBytes` from the data. */
  createSecret(secret: Secret): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_CREATE, { secret });
  }
  /** Only labels can change; empty data (as in a redacted read) keeps the stored data. */
  updateSecret(secret: Secret): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_UPDATE, { secret });
  }
  /** Refused with FAILED_PRECONDITION while a service references the secret. */
  removeSecret(secretId: string, options: { version?: bigint } = {}): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_REMOVE, { secret: removal(secretId, options.version) as Secret });
  }
  createCluster(cluster: Cluster): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_CREATE, { cluster });
  }
  updateCluster(cluster: Cluster): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_UPDATE, { cluster });
  }
  /**
   * Writes a scratch key. `ifVersion`: compare-and-set against the version last read;
   * `ifAbsent`: only if the key does not exist. Neither: unconditional.
   */
  putValue(key: string, value: Uint8Array, options: { ifVersion?: bigint; ifAbsent?: boolean } = {}): void {
    const kv: KeyValue = { key, value: Buffer.from(value), version: options.ifVersion ?? 0n };
    const kind = options.ifAbsent === true ? StoreActionKind.STORE_ACTION_KIND_CREATE : StoreActionKind.STORE_ACTION_KIND_UPDATE;
    this.write(kind, { kv });
  }
  removeValue(key: string, options: { ifVersion?: bigint } = {}): void {
    this.write(StoreActionKind.STORE_ACTION_KIND_REMOVE, { kv: { key, value: Buffer.alloc(0), version: options.ifVersion ?? 0n } });
  }

  /**
   * `node rm`: deletes the node and adds its ID and every certificate serial it was issued to the
   * cluster's revocation list (DESIGN rule 3). Policy (demote managers first, --force) is the caller's.
   */
  removeNodeAndRevoke(nodeId: string, options: { removedAt: Date }): void {
    const node = this.staging.get("nodes", nodeId);
    if (node === undefined) throw new ShoalError("NOT_FOUND", `node ${JSON.stringify(nodeId)} does not exist`);
    const cluster = this.requireCluster();
    this.removeNode(nodeId, { version: versionOf("nodes", node) });
    const updated = deepCopy(cluster);
    updated.revocationList = withRevokedNode(cluster.revocationList, node, options.removedAt);
    this.updateCluster(updated);
  }

  /** Drops revocation entries 7 days past their last certificate's expiry; returns how many. */
  gcRevocations(now: Date): number {
    const cluster = this.requireCluster();
    const { list, removed } = withoutExpiredRevocations(cluster.revocationList, now);
    if (removed > 0) {
      const updated = deepCopy(cluster);
      updated.revocationList = list;
      this.updateCluster(updated);
    }
    return removed;
  }

  private requireCluster(): Cluster {
    const [cluster] = this.staging.all("clusters");
    if (cluster === undefined) throw new ShoalError("FAILED_PRECONDITION", "the cluster is not initialised; run `shoal init` first");
    return cluster;
  }

  // Reads inside the transaction see its own writes; they return copies.
  getNode(id: string): Node | undefined {
    return copyOf(this.staging.get("nodes", id));
  }
  getService(id: string): Service | undefined {
    return copyOf(this.staging.get("services", id));
  }
  findServiceByName(name: string): Service | undefined {
    const id = this.staging.findIdByName("services", name);
    return id === undefined ? undefined : this.getService(id);
  }
  getTask(id: string): Task | undefined {
    return copyOf(this.staging.get("tasks", id));
  }
  /** Without data. */
  getSecret(id: string): Secret | undefined {
    const secret = this.staging.get("secrets", id);
    return secret === undefined ? undefined : redactSecret(secret);
  }
  findSecretByName(name: string): Secret | undefined {
    const id = this.staging.findIdByName("secrets", name);
    return id === undefined ? undefined : this.getSecret(id);
  }
  getCluster(): Cluster | undefined {
    const [cluster] = this.staging.all("clusters");
    return copyOf(cluster);
  }
  getValue(key: string): ValueEntry | undefined {
    const kv = this.staging.get("kv", key);
    return kv === undefined ? undefined : { value: Buffer.from(kv.value), version: kv.version };
  }
}

function varintBytes(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    bytes++;
  }
  return bytes;
}

function removal(id: string, version: bigint | undefined): { id: string; meta: { version: bigint; createdAt: undefined; updatedAt: undefined } } {
  return { id, meta: { version: version ?? 0n, createdAt: undefined, updatedAt: undefined } };
}

function copyOf<T>(object: T | undefined): T | undefined {
  return object === undefined ? undefined : deepCopy(object);
}

export class ObjectStore {
  private state = new StoreState();
  private readonly watchers = new Set<StoreWatcher>();
  private readonly clock: Clock;

  constructor(options: ObjectStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
  }

  /** A new store holding a snapshot's state. Throws STORE_CORRUPT if the bytes are not a valid snapshot. */
  static restore(bytes: Uint8Array, options: ObjectStoreOptions = {}): ObjectStore {
    const store = new ObjectStore(options);
    store.restoreSnapshot(bytes);
    return store;
  }

  /** Raft index of the last applied proposal (or of the restored snapshot). */
  get lastAppliedIndex(): number {
    return this.state.lastAppliedIndex;
  }

  // ---- transactions ------------------------------------------------------------------------

  /**
   * Runs `build` against the current state and returns the encoded proposal to put through Raft.
   * Throws the first rule violation (and proposes nothing). The proposal applies only if it still
   * holds when its entry commits: `apply` checks it again.
   */
  prepare(build: (tx: StoreTransaction) => void, options: PrepareOptions = {}): Uint8Array {
    const proposalId = options.proposalId ?? newId();
    if (!isValidId(proposalId)) throw new ShoalError("INVALID_ARGUMENT", "proposalId must be 25 characters of [0-9a-z]");
    const now = options.now ?? new Date(this.clock.nowMs());
    if (!Number.isFinite(now.getTime())) throw new ShoalError("INVALID_ARGUMENT", "proposal timestamp is not a valid time");
    // Only millisecond precision survives the Date form; fix it now so prepare and apply agree.
    const timestamp = new Date(Math.floor(now.getTime()));
    const tx = new StoreTransaction(new Staging(this.state, timestamp));
    const returned: unknown = build(tx);
    if (returned instanceof Promise) {
      throw new ShoalError("INVALID_ARGUMENT", "a store transaction must be synchronous: read what you need first, then prepare");
    }
    if (tx.encodedActions.length === 0) throw new ShoalError("INVALID_ARGUMENT", "the transaction is empty; it must write something");
    // Field for field what StoreProposal.encode writes (1: id, 2: each action, 3: timestamp), with the
    // actions' bytes reused instead of encoding them again.
    const bytes = encodeScratch((writer) => {
      writer.uint32(10).string(proposalId);
      for (const action of tx.encodedActions) writer.uint32(18).bytes(action);
      return StoreProposal.encode({ proposalId: "", actions: [], timestamp }, writer);
    });
    if (bytes.length > MAX_PROPOSAL_BYTES) {
      throw new ShoalError("PROPOSAL_TOO_LARGE", `the proposal is ${bytes.length} bytes, more than ${MAX_PROPOSAL_BYTES}; split it`);
    }
    return bytes;
  }

  /**
   * Applies one committed proposal at Raft index `index` (strictly increasing). All of its actions
   * apply or none; a rule violation is returned, never thrown, because every manager must reach the
   * same decision. Throws STORE_CORRUPT on bytes that are not a proposal: the node must stop.
   */
  apply(bytes: Uint8Array, context: ApplyContext): ApplyResult {
    const { index } = context;
    if (!Number.isSafeInteger(index) || index <= this.state.lastAppliedIndex) {
      throw new ShoalError("INTERNAL", `invariant violated: apply at index ${index} after index ${this.state.lastAppliedIndex}; entries must apply in order, once`);
    }
    let proposal: StoreProposal;
    try {
      proposal = StoreProposal.decode(bytes);
    } catch (err) {
      throw corrupt(`raft entry ${index} is not a store proposal; the log is damaged, restore this manager from a healthy one`, err);
    }
    if (!isValidId(proposal.proposalId) || proposal.timestamp === undefined || proposal.actions.length === 0) {
      throw corrupt(`raft entry ${index} is not a well-formed store proposal; the log is damaged, restore this manager from a healthy one`);
    }
    for (const action of proposal.actions) actionTarget(action); // throws STORE_CORRUPT
    const proposalId = proposal.proposalId;
    const refuse = (error: ShoalError): ApplyResult => {
      this.state.lastAppliedIndex = index;
      return { ok: false, index, proposalId, error };
    };
    if (bytes.length > MAX_PROPOSAL_BYTES) {
      return refuse(new ShoalError("PROPOSAL_TOO_LARGE", `the proposal is ${bytes.length} bytes, more than ${MAX_PROPOSAL_BYTES}`));
    }
    if (proposal.actions.length > MAX_ACTIONS_PER_PROPOSAL) {
      return refuse(new ShoalError("PROPOSAL_TOO_LARGE", `the proposal has more than ${MAX_ACTIONS_PER_PROPOSAL} actions`));
    }
    const staging = new Staging(this.state, proposal.timestamp);
    try {
      for (const action of proposal.actions) staging.stage(action);
    } catch (err) {
      if (isShoalError(err) && err.code !== "STORE_CORRUPT" && err.code !== "INTERNAL") return refuse(err);
      throw err;
    }
    const stored = staging.commit(index);
    // Views are copies; make them only if someone looks (watchers now, or the caller later).
    let views: StoreChange[] | undefined;
    const changes = (): StoreChange[] => (views ??= stored.map(changeView));
    if (this.watchers.size > 0) this.emit(changes(), index);
    return {
      ok: true,
      index,
      proposalId,
      get changes(): StoreChange[] {
        return changes();
      },
    };
  }

  // ---- snapshot ----------------------------------------------------------------------------

  /** The whole state, sorted by ID, so equal states give identical bytes on every manager. */
  snapshot(): Uint8Array {
    const t = this.state.tables;
    return StoreSnapshot.encode({
      format: SNAPSHOT_FORMAT,
      version: BigInt(this.state.lastAppliedIndex),
      nodes: sortedValues(t.nodes),
      services: sortedValues(t.services),
      tasks: sortedValues(t.tasks),
      secrets: sortedValues(t.secrets),
      clusters: sortedValues(t.clusters),
      kvs: sortedValues(t.kv),
    }).finish();
  }

  /** Replaces the whole state with a snapshot's; watchers get one "reset" event. Throws STORE_CORRUPT. */
  restoreSnapshot(bytes: Uint8Array): void {
    let snapshot: StoreSnapshot;
    try {
      snapshot = StoreSnapshot.decode(bytes);
    } catch (err) {
      throw corrupt("the store snapshot cannot be decoded; it is damaged, restore this manager from a healthy one", err);
    }
    if (snapshot.format !== SNAPSHOT_FORMAT) {
      throw corrupt(`the store snapshot has format ${snapshot.format}, expected ${SNAPSHOT_FORMAT}; it is damaged or from another version`);
    }
    if (snapshot.version > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt("the store snapshot's version is out of range");
    const next = new StoreState();
    next.lastAppliedIndex = Number(snapshot.version);
    const load = <T extends StoreTable>(table: T, objects: TableObjects[T][]): void => {
      for (const object of objects) {
        const key = table === "kv" ? (object as KeyValue).key : (object as { id: string }).id;
        if (table === "kv" ? key.length === 0 : !isValidId(key)) throw corrupt(`the store snapshot holds a ${table} entry with an invalid key`);
        if (next.tables[table].has(key)) throw corrupt(`the store snapshot holds ${table} entry ${JSON.stringify(key)} twice`);
        if ((table === "services" || table === "secrets") && (object as Service | Secret).spec === undefined) {
          throw corrupt(`the store snapshot holds ${table} entry ${JSON.stringify(key)} without a spec`);
        }
        canonicalize(table, object);
        next.put(table, key, undefined, deepFreeze(object) as TableObjects[T]);
      }
    };
    load("nodes", snapshot.nodes);
    load("services", snapshot.services);
    load("tasks", snapshot.tasks);
    load("secrets", snapshot.secrets);
    load("clusters", snapshot.clusters);
    load("kv", snapshot.kvs);
    if (next.tables.clusters.size > 1) throw corrupt("the store snapshot holds more than one cluster object");
    this.state = next;
    this.broadcast({ kind: "reset", index: next.lastAppliedIndex });
  }

  // ---- watch -------------------------------------------------------------------------------

  /**
   * Events of every applied change that passes `filter`, in apply order. A watcher more than
   * `maxQueuedEvents` (default 10,000) behind is closed: its iterator throws QUEUE_FULL.
   */
  watch(filter: WatchFilter = {}, options: WatchOptions = {}): StoreWatch {
    const watcher = new StoreWatcher(filter, options, (w) => this.watchers.delete(w));
    this.watchers.add(watcher);
    return watcher;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  private emit(changes: StoreChange[], index: number): void {
    for (const change of changes) this.broadcast({ ...change, index } as StoreEvent);
  }

  private broadcast(event: StoreEvent): void {
    for (const watcher of [...this.watchers]) watcher.offer(event);
  }

  // ---- reads (copies; secrets never carry data) --------------------------------------------

  getNode(id: string): Node | undefined {
    return copyOf(this.state.tables.nodes.get(id));
  }
  listNodes(): Node[] {
    return byId(this.state.tables.nodes.values()).map(deepCopy);
  }
  getService(id: string): Service | undefined {
    return copyOf(this.state.tables.services.get(id));
  }
  /** Names are unique regardless of case. */
  findServiceByName(name: string): Service | undefined {
    const id = this.state.serviceIdByName.get(name.toLowerCase());
    return id === undefined ? undefined : this.getService(id);
  }
  listServices(): Service[] {
    return byId(this.state.tables.services.values()).map(deepCopy);
  }
  getTask(id: string): Task | undefined {
    return copyOf(this.state.tables.tasks.get(id));
  }
  /**
   * How many tasks fall under each key `keyOf` gives (e.g. their state), without copying them: for
   * gauges read at every scrape. `keyOf` must not keep or change the object it is shown.
   */
  countTasks(keyOf: (task: Readonly<Task>) => string): Map<string, number> {
    return countBy(this.state.tables.tasks.values(), keyOf);
  }
  /** As countTasks, for nodes (e.g. by state and zone). */
  countNodes(keyOf: (node: Readonly<Node>) => string): Map<string, number> {
    return countBy(this.state.tables.nodes.values(), keyOf);
  }
  /** Tasks of one service and/or one node (both: the intersection), sorted by ID. */
  listTasks(filter: { serviceId?: string; nodeId?: string } = {}): Task[] {
    const tasks = this.state.tables.tasks;
    let ids: Iterable<string>;
    if (filter.serviceId !== undefined) ids = this.state.taskIdsByService.get(filter.serviceId) ?? [];
    else if (filter.nodeId !== undefined) ids = this.state.taskIdsByNode.get(filter.nodeId) ?? [];
    else ids = tasks.keys();
    const out: Task[] = [];
    for (const id of ids) {
      const task = tasks.get(id)!;
      if (filter.nodeId !== undefined && task.nodeId !== filter.nodeId) continue;
      out.push(task);
    }
    return byId(out).map(deepCopy);
  }
  /** Without data (DESIGN rule 6). */
  getSecret(id: string): Secret | undefined {
    const secret = this.state.tables.secrets.get(id);
    return secret === undefined ? undefined : redactSecret(secret);
  }
  findSecretByName(name: string): Secret | undefined {
    const id = this.state.secretIdByName.get(name.toLowerCase());
    return id === undefined ? undefined : this.getSecret(id);
  }
  listSecrets(): Secret[] {
    return byId(this.state.tables.secrets.values()).map(redactSecret);
  }
  /**
   * The secret's bytes, for the dispatcher only (it sends them to a node with an assigned task that
   * references the secret). Never return these from a read API.
   */
  getSecretData(id: string): Buffer | undefined {
    const secret = this.state.tables.secrets.get(id);
    return secret === undefined ? undefined : Buffer.from(secret.spec!.data);
  }
  /**
   * The full cluster object, including the CA key, unlock key and join tokens, for the manager's own
   * use (signing, token checks). Anything leaving the manager must go through `redactCluster`.
   */
  getCluster(): Cluster | undefined {
    const [cluster] = this.state.tables.clusters.values();
    return copyOf(cluster);
  }
  getRevocationList(): RevocationList {
    const [cluster] = this.state.tables.clusters.values();
    return deepCopy(cluster?.revocationList ?? { nodes: [] });
  }
  getValue(key: string): ValueEntry | undefined {
    const kv = this.state.tables.kv.get(key);
    return kv === undefined ? undefined : { value: Buffer.from(kv.value), version: kv.version };
  }
  /** Number of objects per table, for metrics and tests. */
  counts(): Record<StoreTable, number> {
    const out = {} as Record<StoreTable, number>;
    for (const table of TABLES) out[table] = this.state.tables[table].size;
    return out;
  }
}

function countBy<T>(objects: Iterable<T>, keyOf: (object: Readonly<T>) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const object of objects) {
    const key = keyOf(object);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
