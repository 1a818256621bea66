// The state tables and the copy-on-write overlay that one proposal's actions are checked against.
// The same code checks a transaction when it is prepared and again when its Raft entry is applied,
// so both decisions follow one set of rules and every manager decides alike.
import { createHmac } from "node:crypto";
import { ShoalError } from "../base/errors.js";
import { ServiceSpec, type Cluster, type Meta, type Node, type Secret, type Service, type Task } from "../proto/shoal/v1/objects.js";
import { StoreActionKind, type KeyValue, type StoreAction } from "../proto/shoal/v1/store.js";
import { deepCopy, deepFreeze, sortedMap } from "./copies.js";
import { redactCluster, redactSecret } from "./redact.js";
import {
  validateCluster,
  validateKv,
  validateKvKey,
  validateNode,
  validateSecret,
  validateServiceSpec,
  validateTask,
  validateId,
} from "./validate.js";
import type { ChangeKind, StoreChange, StoreTable, TableObjects } from "./watch.js";

export const TABLES: readonly StoreTable[] = ["nodes", "services", "tasks", "secrets", "clusters", "kv"];

const TABLE_NOUN: Record<StoreTable, string> = {
  nodes: "node",
  services: "service",
  tasks: "task",
  secrets: "secret",
  clusters: "cluster",
  kv: "key",
};

type TableMaps = { [T in StoreTable]: Map<string, TableObjects[T]> };

/** The committed state: tables of frozen objects plus the secondary indexes reads need. */
export class StoreState {
  readonly tables: TableMaps = {
    nodes: new Map(),
    services: new Map(),
    tasks: new Map(),
    secrets: new Map(),
    clusters: new Map(),
    kv: new Map(),
  };
  /** Lower-cased names, because names are unique regardless of case (as in Swarm). */
  readonly serviceIdByName = new Map<string, string>();
  readonly secretIdByName = new Map<string, string>();
  readonly taskIdsByService = new Map<string, Set<string>>();
  readonly taskIdsByNode = new Map<string, Set<string>>();
  /** Raft index of the last applied proposal. */
  lastAppliedIndex = 0;

  /** Stores (or with `next` undefined, deletes) one object and keeps the indexes in step. */
  put<T extends StoreTable>(table: T, key: string, previous: TableObjects[T] | undefined, next: TableObjects[T] | undefined): void {
    const map = this.tables[table] as Map<string, TableObjects[T]>;
    if (next === undefined) map.delete(key);
    else map.set(key, next);
    if (table === "services") {
      const p = previous as Service | undefined;
      const n = next as Service | undefined;
      if (p !== undefined) this.serviceIdByName.delete(p.spec!.name.toLowerCase());
      if (n !== undefined) this.serviceIdByName.set(n.spec!.name.toLowerCase(), key);
    } else if (table === "secrets") {
      const p = previous as Secret | undefined;
      const n = next as Secret | undefined;
      if (p !== undefined) this.secretIdByName.delete(p.spec!.name.toLowerCase());
      if (n !== undefined) this.secretIdByName.set(n.spec!.name.toLowerCase(), key);
    } else if (table === "tasks") {
      const p = previous as Task | undefined;
      const n = next as Task | undefined;
      if (p !== undefined) {
        removeFromIndex(this.taskIdsByService, p.serviceId, key);
        if (p.nodeId !== "") removeFromIndex(this.taskIdsByNode, p.nodeId, key);
      }
      if (n !== undefined) {
        addToIndex(this.taskIdsByService, n.serviceId, key);
        if (n.nodeId !== "") addToIndex(this.taskIdsByNode, n.nodeId, key);
      }
    }
  }
}

function addToIndex(index: Map<string, Set<string>>, key: string, id: string): void {
  let set = index.get(key);
  if (set === undefined) index.set(key, (set = new Set()));
  set.add(id);
}

function removeFromIndex(index: Map<string, Set<string>>, key: string, id: string): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(id);
  if (set.size === 0) index.delete(key);
}

export function versionOf(table: StoreTable, object: TableObjects[StoreTable]): bigint {
  return table === "kv" ? (object as KeyValue).version : ((object as { meta?: Meta }).meta?.version ?? 0n);
}

function setVersion(table: StoreTable, object: TableObjects[StoreTable], version: bigint): void {
  if (table === "kv") (object as KeyValue).version = version;
  else (object as { meta: Meta }).meta.version = version;
}

/** Puts label maps in key order so that equal states encode to equal bytes. */
export function canonicalize(table: StoreTable, object: TableObjects[StoreTable]): void {
  if (table === "nodes") {
    const node = object as Node;
    if (node.spec !== undefined) node.spec.labels = sortedMap(node.spec.labels);
  } else if (table === "services") {
    const service = object as Service;
    if (service.spec !== undefined) service.spec.labels = sortedMap(service.spec.labels);
  } else if (table === "secrets") {
    const secret = object as Secret;
    if (secret.spec !== undefined) secret.spec.labels = sortedMap(secret.spec.labels);
  }
}

/** Which table an action targets, and the key of its object. Throws STORE_CORRUPT on a malformed action. */
export function actionTarget(action: StoreAction): { table: StoreTable; key: string; object: TableObjects[StoreTable] } {
  const found: { table: StoreTable; key: string; object: TableObjects[StoreTable] }[] = [];
  if (action.node !== undefined) found.push({ table: "nodes", key: action.node.id, object: action.node });
  if (action.service !== undefined) found.push({ table: "services", key: action.service.id, object: action.service });
  if (action.task !== undefined) found.push({ table: "tasks", key: action.task.id, object: action.task });
  if (action.secret !== undefined) found.push({ table: "secrets", key: action.secret.id, object: action.secret });
  if (action.cluster !== undefined) found.push({ table: "clusters", key: action.cluster.id, object: action.cluster });
  if (action.kv !== undefined) found.push({ table: "kv", key: action.kv.key, object: action.kv });
  if (found.length !== 1) throw new ShoalError("STORE_CORRUPT", `store action has ${found.length} targets instead of one`);
  if (![StoreActionKind.STORE_ACTION_KIND_CREATE, StoreActionKind.STORE_ACTION_KIND_UPDATE, StoreActionKind.STORE_ACTION_KIND_REMOVE].includes(action.kind)) {
    throw new ShoalError("STORE_CORRUPT", `store action has unknown kind ${action.kind}`);
  }
  return found[0]!;
}

interface StagedEntry {
  object: TableObjects[StoreTable] | undefined;
}

const NO_STAGED: ReadonlyMap<string, StagedEntry> = new Map();

/**
 * A proposal's view of the state: reads fall through to the committed tables, writes stay here
 * until `commit`. Objects written keep their pre-proposal version while staged, so that several
 * actions of one proposal on the same object all carry the version the writer read.
 */
export class Staging {
  // Per-table maps are made on first write: a typical proposal touches one table, and building
  // eight maps for every applied proposal showed in a follower's profile.
  private readonly staged: { [T in StoreTable]?: Map<string, StagedEntry> } = {};
  private readonly touched: { table: StoreTable; key: string }[] = [];

  constructor(
    private readonly base: StoreState,
    private readonly timestamp: Date,
  ) {}

  get<T extends StoreTable>(table: T, key: string): TableObjects[T] | undefined {
    const entry = this.staged[table]?.get(key);
    if (entry !== undefined) return entry.object as TableObjects[T] | undefined;
    return this.base.tables[table].get(key) as TableObjects[T] | undefined;
  }

  /** Every object of a table as this proposal sees it. */
  *all<T extends StoreTable>(table: T): Iterable<TableObjects[T]> {
    const staged = this.staged[table] ?? NO_STAGED;
    for (const [key, object] of this.base.tables[table]) {
      if (!staged.has(key)) yield object as TableObjects[T];
    }
    for (const entry of staged.values()) {
      if (entry.object !== undefined) yield entry.object as TableObjects[T];
    }
  }

  /** Lower-cased names of the live staged services and secrets, so lookups stay O(1) in big transactions. */
  private readonly stagedNames: { services?: Map<string, string>; secrets?: Map<string, string> } = {};

  private set(table: StoreTable, key: string, object: TableObjects[StoreTable] | undefined): void {
    if (table === "services" || table === "secrets") {
      const names = (this.stagedNames[table] ??= new Map());
      const previous = this.get(table, key);
      if (previous !== undefined) {
        const lower = previous.spec!.name.toLowerCase();
        if (names.get(lower) === key) names.delete(lower);
      }
      if (object !== undefined) names.set((object as Service | Secret).spec!.name.toLowerCase(), key);
    }
    const staged = (this.staged[table] ??= new Map());
    if (!staged.has(key)) this.touched.push({ table, key });
    staged.set(key, { object });
  }

  findIdByName(table: "services" | "secrets", name: string): string | undefined {
    const lower = name.toLowerCase();
    const stagedId = this.stagedNames[table]?.get(lower);
    if (stagedId !== undefined) return stagedId;
    const id = (table === "services" ? this.base.serviceIdByName : this.base.secretIdByName).get(lower);
    // A committed owner that this proposal removed (or changed) no longer holds the name.
    return id !== undefined && !(this.staged[table]?.has(id) ?? false) ? id : undefined;
  }

  /**
   * Checks one action against this view and stages its effect; throws a ShoalError with a stable
   * code when a rule refuses it (nothing is staged then). The action object is taken over.
   */
  stage(action: StoreAction): void {
    const { table, key, object } = actionTarget(action);
    const noun = TABLE_NOUN[table];
    const current = this.get(table, key);
    const kind = action.kind;
    if (kind === StoreActionKind.STORE_ACTION_KIND_REMOVE) {
      if (table === "kv") validateKvKey(key);
      else validateId(key, noun);
      if (current === undefined) throw notFound(noun, key);
      const expected = versionOf(table, object);
      if (expected !== 0n) this.checkVersion(table, key, current, expected);
      if (table === "secrets") this.checkSecretUnused(current as Secret);
      this.set(table, key, undefined);
      return;
    }
    const creating = kind === StoreActionKind.STORE_ACTION_KIND_CREATE;
    switch (table) {
      case "nodes":
        validateNode(object as Node);
        break;
      case "services":
        this.checkService(object as Service, current as Service | undefined);
        break;
      case "tasks":
        this.checkTask(object as Task, current as Task | undefined, creating);
        break;
      case "secrets":
        this.checkSecret(object as Secret, current as Secret | undefined, creating);
        break;
      case "clusters":
        this.checkCluster(object as Cluster, current as Cluster | undefined, creating);
        break;
      case "kv":
        validateKv(object as KeyValue);
        break;
    }
    let baseVersion = 0n;
    if (creating) {
      if (current !== undefined) throw new ShoalError("ALREADY_EXISTS", `${noun} ${JSON.stringify(key)} already exists`);
    } else if (table === "kv") {
      // A put without a version is an upsert; with one it is a compare-and-set.
      const expected = (object as KeyValue).version;
      if (expected !== 0n) {
        if (current === undefined) throw notFound(noun, key);
        this.checkVersion(table, key, current, expected);
      }
      baseVersion = current === undefined ? 0n : versionOf(table, current);
    } else {
      if (current === undefined) throw notFound(noun, key);
      baseVersion = this.checkVersion(table, key, current, versionOf(table, object));
    }
    if (table !== "kv") {
      const createdAt = creating || current === undefined ? this.timestamp : (current as { meta?: Meta }).meta?.createdAt;
      (object as { meta?: Meta }).meta = { version: 0n, createdAt, updatedAt: this.timestamp };
    }
    setVersion(table, object, baseVersion);
    canonicalize(table, object);
    this.set(table, key, object);
  }

  private checkVersion(table: StoreTable, key: string, current: TableObjects[StoreTable], expected: bigint): bigint {
    const actual = versionOf(table, current);
    if (actual !== expected) {
      throw new ShoalError(
        "VERSION_CONFLICT",
        `${TABLE_NOUN[table]} ${JSON.stringify(key)} was changed by someone else (version ${actual}, expected ${expected}); read it again and retry`,
      );
    }
    return actual;
  }

  private checkService(service: Service, current: Service | undefined): void {
    validateId(service.id, "service");
    // References carry the secret's current name, so the default target (the name) is checked too.
    for (const ref of service.spec?.container?.secrets ?? []) {
      const secret = this.get("secrets", ref.secretId);
      if (secret !== undefined) ref.secretName = secret.spec!.name;
    }
    const zone = validateServiceSpec(service.spec);
    const spec = service.spec!;
    if (current !== undefined && current.spec!.name !== spec.name) {
      throw new ShoalError("INVALID_ARGUMENT", "renaming a service is not supported; create a new service instead");
    }
    const sameName = this.findIdByName("services", spec.name);
    if (sameName !== undefined && sameName !== service.id) {
      throw new ShoalError("ALREADY_EXISTS", `a service named ${JSON.stringify(spec.name)} already exists; choose another name`);
    }
    versionSpec(service, current);
    for (const ref of spec.container?.secrets ?? []) {
      const secret = this.get("secrets", ref.secretId);
      if (secret === undefined) throw new ShoalError("NOT_FOUND", `secret ${JSON.stringify(ref.secretId)} does not exist; create it first`);
      const secretZone = secret.spec!.zone;
      // DESIGN rule 7: a zoned secret never reaches a service (and so a node) of another zone.
      if (secretZone !== "" && secretZone !== zone) {
        throw new ShoalError(
          "PERMISSION_DENIED",
          `secret ${JSON.stringify(secret.spec!.name)} belongs to zone ${JSON.stringify(secretZone)} and cannot be attached to a service of zone ${JSON.stringify(zone)}; create the secret in that zone`,
        );
      }
    }
  }

  private checkTask(task: Task, current: Task | undefined, creating: boolean): void {
    validateTask(task);
    if (creating && this.get("services", task.serviceId) === undefined) {
      throw new ShoalError("NOT_FOUND", `service ${JSON.stringify(task.serviceId)} of the task does not exist`);
    }
    if (current !== undefined && !creating && current.serviceId !== task.serviceId) {
      throw new ShoalError("INVALID_ARGUMENT", "a task cannot move to another service");
    }
  }

  private checkSecret(secret: Secret, current: Secret | undefined, creating: boolean): void {
    if (creating) {
      validateSecret(secret);
      const spec = secret.spec!;
      if (this.findIdByName("secrets", spec.name) !== undefined) {
        throw new ShoalError("ALREADY_EXISTS", `a secret named ${JSON.stringify(spec.name)} already exists; choose another name`);
      }
      // A keyed MAC, never a plain hash: a hash of a short password gives the password away to
      // anyone who can guess it. The key is the cluster's, sealed in the store (none: no MAC).
      const key = [...this.all("clusters")][0]?.secretMacKey;
      secret.dataMac = key !== undefined && key.length > 0 ? createHmac("sha256", key).update(spec.data).digest("hex") : "";
      secret.sizeBytes = spec.data.length;
      return;
    }
    if (current === undefined) return; // reported as NOT_FOUND by the caller
    // Secrets are immutable apart from labels (as in Swarm). Updates may come from redacted reads,
    // so empty data means "unchanged".
    const spec = secret.spec;
    const was = current.spec!;
    if (spec === undefined) throw new ShoalError("INVALID_ARGUMENT", "secret update has no spec");
    if (spec.name !== was.name || spec.zone !== was.zone || (spec.data.length > 0 && !spec.data.equals(was.data))) {
      throw new ShoalError("INVALID_ARGUMENT", "only the labels of a secret can change; create a new secret for new data, name or zone");
    }
    validateSecret({ ...secret, spec: { ...spec, data: was.data } });
    spec.data = was.data;
    secret.dataMac = current.dataMac;
    secret.sizeBytes = current.sizeBytes;
  }

  private checkSecretUnused(secret: Secret): void {
    for (const service of this.all("services")) {
      if ((service.spec?.container?.secrets ?? []).some((ref) => ref.secretId === secret.id)) {
        throw new ShoalError(
          "FAILED_PRECONDITION",
          `secret ${JSON.stringify(secret.spec!.name)} is in use by service ${JSON.stringify(service.spec!.name)}; remove it from the service first`,
        );
      }
    }
  }

  private checkCluster(cluster: Cluster, current: Cluster | undefined, creating: boolean): void {
    validateCluster(cluster);
    if (creating) {
      for (const other of this.all("clusters")) {
        throw new ShoalError("ALREADY_EXISTS", `the cluster object ${JSON.stringify(other.id)} already exists; a store holds one cluster`);
      }
      return;
    }
    // A redacted view written back would wipe the CA key and with it the cluster's identity.
    if (current !== undefined && (current.rootCa?.caKeyPem.length ?? 0) > 0 && (cluster.rootCa?.caKeyPem.length ?? 0) === 0) {
      throw new ShoalError("INVALID_ARGUMENT", "cluster update would drop the CA key; update a full copy from getCluster(), not a redacted view");
    }
    // The same for a rotation's new root: a redacted copy would lose the key the rotation moves to.
    const rotating = current?.rootCa?.rootRotation;
    const next = cluster.rootCa?.rootRotation;
    if (rotating !== undefined && next !== undefined && rotating.caKeyPem.length > 0 && next.caKeyPem.length === 0) {
      throw new ShoalError("INVALID_ARGUMENT", "cluster update would drop the rotation's CA key; update a full copy from getCluster(), not a redacted view");
    }
    // The secret MAC key, like the CA key, never changes once set.
    if (current !== undefined && current.secretMacKey.length > 0) cluster.secretMacKey = current.secretMacKey;
  }

  /**
   * Writes the staged objects into the base state with version = `index`; returns what changed,
   * pointing at the stored (frozen, never again modified) objects: use `changeView` before they
   * leave the store.
   */
  commit(index: number): StoreChange[] {
    const version = BigInt(index);
    const changes: StoreChange[] = [];
    for (const { table, key } of this.touched) {
      const next = this.staged[table]!.get(key)!.object;
      const previous = this.base.tables[table].get(key);
      if (next === undefined && previous === undefined) continue;
      if (next !== undefined) {
        setVersion(table, next, version);
        deepFreeze(next);
      }
      this.base.put(table, key, previous, next);
      const kind: ChangeKind = previous === undefined ? "create" : next === undefined ? "remove" : "update";
      const change = { table, kind, object: (next ?? previous)! } as StoreChange;
      if (kind === "update") change.oldObject = previous!;
      changes.push(change);
    }
    this.base.lastAppliedIndex = index;
    return changes;
  }
}

/**
 * What a change event or apply result may show: copies (frozen objects can still have their byte
 * arrays written to, so the stored ones never leave), secrets without data, and the cluster without
 * CA key, unlock key or join tokens (read those with getCluster()).
 */
export function changeView(change: StoreChange): StoreChange {
  const view = (object: TableObjects[StoreTable]): TableObjects[StoreTable] => {
    if (change.table === "secrets") return deepFreeze(redactSecret(object as Secret));
    if (change.table === "clusters") return deepFreeze(redactCluster(object as Cluster));
    return deepFreeze(deepCopy(object));
  };
  // Copied on first read: most consumers look only at the table and kind of each change, and
  // copying every applied object showed as a few percent of a follower's CPU under writes.
  let object: TableObjects[StoreTable] | undefined;
  let oldObject: TableObjects[StoreTable] | undefined;
  const out = {
    table: change.table,
    kind: change.kind,
    get object() {
      return (object ??= view(change.object));
    },
  } as StoreChange;
  if (change.oldObject !== undefined) {
    const previous = change.oldObject;
    Object.defineProperty(out, "oldObject", { enumerable: true, get: () => (oldObject ??= view(previous)) });
  }
  return out;
}

/**
 * The store owns a service's spec history, so that every writer (control API, orchestrator rollback)
 * gets the same rule: a new service starts at spec_version 1; an update whose spec differs bumps
 * spec_version and keeps the spec it replaced as previous_spec (what `rollback` returns to); an update
 * that leaves the spec alone keeps both as they were, whatever the writer sent.
 */
function versionSpec(service: Service, current: Service | undefined): void {
  if (current === undefined) {
    service.specVersion = 1n;
    service.previousSpec = undefined;
    return;
  }
  const canonical = (spec: ServiceSpec): Uint8Array => ServiceSpec.encode({ ...spec, labels: sortedMap(spec.labels) }).finish();
  if (Buffer.from(canonical(service.spec!)).equals(canonical(current.spec!))) {
    service.specVersion = current.specVersion;
    service.previousSpec = current.previousSpec === undefined ? undefined : deepCopy(current.previousSpec);
    return;
  }
  service.specVersion = current.specVersion + 1n;
  service.previousSpec = deepCopy(current.spec!);
}

function notFound(noun: string, key: string): ShoalError {
  return new ShoalError("NOT_FOUND", `${noun} ${JSON.stringify(key)} does not exist`);
}
