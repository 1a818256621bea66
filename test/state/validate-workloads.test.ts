// The workload fields of a service spec at their bounds (accepted) and one past (refused), through the
// store (prepare, and again at apply on every manager), plus engine.labels constraints and the
// capability spelling the CLI and the executor share.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { NetworkMode, RestartCondition, ServiceMode, UpdateFailureAction, type Service } from "../../src/proto/shoal/v1/objects.js";
import { normalizeCapability } from "../../src/state/capabilities.js";
import { nodeMatches, parseConstraint, serviceZone } from "../../src/state/constraints.js";
import {
  MAX_NANO_CPUS,
  MAX_PIDS_LIMIT,
  MAX_RESTART_WINDOW_MS,
  MAX_STOP_GRACE_PERIOD_MS,
  MAX_UNIX_ID,
  MAX_WORKLOAD_DELAY_MS,
  MIN_MEMORY_LIMIT_BYTES,
  MIN_NANO_CPUS,
  ObjectStore,
} from "../../src/state/index.js";
import { StoreProposal } from "../../src/proto/shoal/v1/store.js";
import { commit, makeNode, makeService } from "./fixtures.js";

type Spec = NonNullable<Service["spec"]>;
const container = (c: Partial<NonNullable<Spec["container"]>>): Partial<Spec> => ({
  container: { ...makeService("x").spec!.container!, ...c },
});

function accepts(spec: Partial<Spec>): void {
  commit(new ObjectStore(), (tx) => tx.createService(makeService("s", spec)));
}
function refuses(spec: Partial<Spec>, pattern: RegExp): void {
  const store = new ObjectStore();
  try {
    store.prepare((tx) => tx.createService(makeService("s", spec)));
  } catch (err) {
    assert.ok(isShoalError(err, "INVALID_ARGUMENT"), String(err));
    assert.match(err.message, pattern);
    return;
  }
  assert.fail(`accepted ${JSON.stringify(spec, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`);
}

const limits = (l: { memoryBytes?: bigint; nanoCpus?: bigint; pids?: bigint }) => container({ limits: { memoryBytes: 0n, nanoCpus: 0n, pids: 0n, ...l } });
const restart = (r: Partial<NonNullable<Spec["restartPolicy"]>>): Partial<Spec> => ({
  restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 0n, maxAttempts: 0, windowMs: 0n, ...r },
});
const updates = (which: "updateConfig" | "rollbackConfig", u: Partial<NonNullable<Spec["updateConfig"]>>): Partial<Spec> => ({
  [which]: { parallelism: 0, delayMs: 0n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, monitorMs: 0n, maxFailureRatio: 0, ...u },
});

test("limits: memory from 6 MiB, CPU 0.01 to 1024 cores, pids 1 to 2^22; 0 is no limit", () => {
  accepts(limits({}));
  accepts(limits({ memoryBytes: BigInt(MIN_MEMORY_LIMIT_BYTES), nanoCpus: MIN_NANO_CPUS, pids: 1n }));
  accepts(limits({ nanoCpus: MAX_NANO_CPUS, pids: MAX_PIDS_LIMIT }));
  refuses(limits({ memoryBytes: BigInt(MIN_MEMORY_LIMIT_BYTES) - 1n }), /memory limit/);
  refuses(limits({ memoryBytes: -1n }), /memory limit/);
  refuses(limits({ nanoCpus: MIN_NANO_CPUS - 1n }), /CPU limit/);
  refuses(limits({ nanoCpus: MAX_NANO_CPUS + 1n }), /CPU limit/);
  refuses(limits({ pids: MAX_PIDS_LIMIT + 1n }), /pids limit/);
  refuses(limits({ pids: -1n }), /pids limit/);
});

test("user, workdir, env, network, stop grace period, capabilities", () => {
  accepts(container({ user: "0" }));
  accepts(container({ user: `${MAX_UNIX_ID}:${MAX_UNIX_ID}` }));
  for (const user of ["root", "1000:", ":1000", "1000:1000:1", `${MAX_UNIX_ID + 1}`, " 1000", "-1"]) refuses(container({ user }), /UID or UID:GID/);
  accepts(container({ dir: "/srv/app" }));
  refuses(container({ dir: "srv" }), /absolute/);
  refuses(container({ dir: "/a\0b" }), /NUL/);
  accepts(container({ env: ["A=", "_X=1=2", "PATH=/bin"] }));
  for (const e of ["A", "=1", "1A=x", "A B=1"]) refuses(container({ env: [e] }), /NAME=VALUE/);
  accepts(container({ network: NetworkMode.NETWORK_MODE_HOST }));
  refuses(container({ network: 2 as NetworkMode }), /network/);
  accepts(container({ stopGracePeriodMs: MAX_STOP_GRACE_PERIOD_MS }));
  refuses(container({ stopGracePeriodMs: MAX_STOP_GRACE_PERIOD_MS + 1n }), /stop grace/);
  accepts(container({ capAdd: ["CAP_NET_ADMIN", "CAP_SYS_TIME"], capDrop: ["ALL"] }));
  refuses(container({ capAdd: ["ALL"] }), /never runs privileged/);
  refuses(container({ capAdd: ["NET_ADMIN"] }), /not a Linux capability/);
  refuses(container({ capDrop: ["CAP_NET_RAW"], capAdd: ["CAP_NET_RAW"] }), /both adds and drops/);
  refuses(container({ image: "a b" }), /whitespace/);
});

test("mode, restart policy, update and rollback config", () => {
  accepts({ mode: ServiceMode.SERVICE_MODE_GLOBAL, replicas: 0 });
  accepts({ mode: ServiceMode.SERVICE_MODE_GLOBAL, replicas: 1 }); // meaningless, refused by the control API only
  refuses({ mode: 2 as ServiceMode }, /mode/);
  accepts(restart({ condition: RestartCondition.RESTART_CONDITION_NONE, delayMs: MAX_WORKLOAD_DELAY_MS, maxAttempts: 1_000_000, windowMs: MAX_RESTART_WINDOW_MS }));
  refuses(restart({ condition: 3 as RestartCondition }), /restart condition/);
  refuses(restart({ delayMs: MAX_WORKLOAD_DELAY_MS + 1n }), /restart delay/);
  refuses(restart({ maxAttempts: 1_000_001 }), /max attempts/);
  refuses(restart({ windowMs: MAX_RESTART_WINDOW_MS + 1n }), /restart window/);
  for (const action of [UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK, UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE]) {
    accepts(updates("updateConfig", { failureAction: action, parallelism: 10_000, delayMs: MAX_WORKLOAD_DELAY_MS, monitorMs: MAX_WORKLOAD_DELAY_MS, maxFailureRatio: 1 }));
  }
  refuses(updates("rollbackConfig", { failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK }), /rollback failure action must be pause or continue/);
  refuses(updates("updateConfig", { failureAction: 3 as UpdateFailureAction }), /failure action/);
  refuses(updates("updateConfig", { parallelism: 10_001 }), /parallelism/);
  refuses(updates("rollbackConfig", { delayMs: MAX_WORKLOAD_DELAY_MS + 1n }), /rollback delay/);
  refuses(updates("updateConfig", { monitorMs: MAX_WORKLOAD_DELAY_MS + 1n }), /monitor/);
  for (const ratio of [-0.1, 1.01, Number.NaN, Number.POSITIVE_INFINITY]) refuses(updates("updateConfig", { maxFailureRatio: ratio }), /max failure ratio/);
});

test("the store checks the workload rules again when a refused spec arrives in a raft entry", () => {
  // A leader that skipped validation (or a forged entry) must not get a bad spec into any store.
  const store = new ObjectStore();
  const proposal = StoreProposal.decode(store.prepare((tx) => tx.createService(makeService("s", container({ user: "1000", capAdd: ["CAP_CHOWN"] })))));
  proposal.actions[0]!.service!.spec!.container!.capAdd = ["ALL"];
  const result = store.apply(StoreProposal.encode(proposal).finish(), { index: 1 });
  assert.equal(!result.ok && result.error.code, "INVALID_ARGUMENT");
  assert.equal(store.listServices().length, 0);
});

test("engine.labels constraints: parsed, matched on node-reported labels, never a zone", () => {
  assert.deepEqual(parseConstraint("engine.labels.disk==ssd"), { field: "engine_label", key: "disk", op: "==", value: "ssd" });
  assert.deepEqual(parseConstraint("engine.labels.os != windows"), { field: "engine_label", key: "os", op: "!=", value: "windows" });
  for (const bad of ["engine.labels.==x", "engine.labels.a b==x", "engine.labels.disk==", "engine.disk==ssd"]) {
    assert.throws(() => parseConstraint(bad), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT"), bad);
  }
  const node = makeNode({ description: { hostname: "h", platform: "", engineVersion: "", engineLabels: { disk: "ssd", zone: "a" }, executors: [], resources: undefined } });
  assert.equal(nodeMatches(node, ["engine.labels.disk==ssd"]), true);
  assert.equal(nodeMatches(node, ["engine.labels.disk!=ssd"]), false);
  assert.equal(nodeMatches(node, ["engine.labels.gpu==yes"]), false);
  assert.equal(nodeMatches(node, ["engine.labels.gpu!=yes"]), true, "a missing label satisfies !=, as in Swarm");
  // The same key as a manager-set label is a different thing: the node's own zone claim counts for nothing.
  assert.equal(nodeMatches(node, ["node.labels.disk==ssd"]), false);
  assert.equal(serviceZone({ zone: "", constraints: ["engine.labels.zone==a"] }), "default");
});

test("capability names: any case, with or without CAP_, become the canonical name; others are refused", () => {
  assert.equal(normalizeCapability("net_admin", "--cap-add"), "CAP_NET_ADMIN");
  assert.equal(normalizeCapability("CAP_SYS_TIME", "--cap-add"), "CAP_SYS_TIME");
  assert.equal(normalizeCapability("all", "--cap-drop"), "ALL");
  for (const bad of ["", "CAP_", "make_coffee", "net admin", "CAP_NET_ADMIN;x"]) {
    assert.throws(() => normalizeCapability(bad, "--cap-add"), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /--cap-add/.test(err.message), bad);
  }
});
