// The control API's workload rules through the real API (a one-manager daemon, its control socket,
// raft and the encrypted store): bad specs refused with stable codes, whatever a client sends; the
// zone rule for secrets on create, update and secret-add; rollback; rm as a pending delete; secret
// size bounds and in-use refusal; no read API returning secret bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { DaemonClient } from "../../src/cli/daemon-client.js";
import {
  NetworkMode,
  RestartCondition,
  ServiceMode,
  ServiceSpec,
  UpdateFailureAction,
  UpdateState,
  type Service,
} from "../../src/proto/shoal/v1/objects.js";
import { MAX_SECRET_BYTES } from "../../src/state/limits.js";
import { refusedWith, singleManager } from "./single-manager.js";
import { retryOnVersionConflict } from "../../src/cli/retry.js";
import { waitFor } from "../e2e/cluster.js";

// Loosely typed on purpose: these tests send what a careless or hostile client could send.
type PartialSpec = Record<string, unknown>;

function spec(name: string, extra: PartialSpec = {}): ServiceSpec {
  return ServiceSpec.fromPartial({ name, replicas: 1, container: { command: ["sleep", "100"] }, ...extra } as Parameters<typeof ServiceSpec.fromPartial>[0]);
}

/** A read-modify-write as the CLI does it: the orchestrator also writes the service (its update status). */
async function update(client: DaemonClient, service: Service, change: (s: ServiceSpec) => void): Promise<Service> {
  return retryOnVersionConflict(`service ${service.id}`, async () => {
    const fresh = await client.getService(service.id);
    const next = ServiceSpec.fromPartial(fresh.spec!);
    change(next);
    return client.updateService({ serviceId: fresh.id, serviceVersion: fresh.meta!.version, spec: next, rollback: false });
  });
}

test("control API: workload specs are validated by the server, whatever the client sends", async (t) => {
  const { client } = await singleManager(t, "shoal-capi-validate-");
  const container = (extra: Record<string, unknown>): PartialSpec => ({ container: { command: ["true"], ...extra } }) as PartialSpec;
  const bad: [string, PartialSpec, RegExp][] = [
    ["memory below 6 MiB", container({ limits: { memoryBytes: 1024n } }), /memory limit/],
    ["negative memory", container({ limits: { memoryBytes: -1n } }), /memory limit/],
    ["cpu above 1024 cores", container({ limits: { nanoCpus: 2000n * 1_000_000_000n } }), /CPU limit/],
    ["cpu below 0.01", container({ limits: { nanoCpus: 1n } }), /CPU limit/],
    ["pids negative", container({ limits: { pids: -5n } }), /pids limit/],
    ["user by name", container({ user: "root" }), /UID or UID:GID/],
    ["user past 32 bits", container({ user: "4294967296" }), /UID or UID:GID/],
    ["cap_add ALL", container({ capAdd: ["ALL"] }), /never runs privileged/],
    ["unknown capability", container({ capAdd: ["CAP_MAKE_COFFEE"] }), /not a Linux capability/],
    ["lower-case capability (not canonical)", container({ capDrop: ["net_raw"] }), /not a Linux capability/],
    ["add and drop the same", container({ capAdd: ["CAP_NET_ADMIN"], capDrop: ["CAP_NET_ADMIN"] }), /both adds and drops/],
    ["unknown network mode", container({ network: 7 as NetworkMode }), /network must be/],
    ["relative workdir", container({ dir: "tmp" }), /absolute path/],
    ["env without =", container({ env: ["JUSTANAME"] }), /NAME=VALUE/],
    ["NUL in an argument", container({ args: ["a\0b"] }), /NUL/],
    ["stop grace over 1h", container({ stopGracePeriodMs: 3_600_001n }), /stop grace period/],
    ["image digest from the operator", container({ image: "127.0.0.1:5000/app:1", imageDigest: `sha256:${"0".repeat(64)}` }), /image_digest is set by the managers/],
    ["whitespace in the image", container({ image: "127.0.0.1:5000/app:1 --privileged" }), /whitespace/],
    ["unknown mode", { mode: 5 as ServiceMode }, /mode must be/],
    ["global with replicas", { mode: ServiceMode.SERVICE_MODE_GLOBAL, replicas: 3 }, /replicas apply only/],
    ["restart condition out of range", { restartPolicy: { condition: 9 as RestartCondition, delayMs: 0n, maxAttempts: 0, windowMs: 0n } }, /restart condition/],
    ["restart delay over a day", { restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 86_400_001n, maxAttempts: 0, windowMs: 0n } }, /restart delay/],
    ["update failure action out of range", { updateConfig: { parallelism: 1, delayMs: 0n, failureAction: 9 as UpdateFailureAction, monitorMs: 0n, maxFailureRatio: 0 } }, /failure action/],
    ["rollback that rolls back", { rollbackConfig: { parallelism: 1, delayMs: 0n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK, monitorMs: 0n, maxFailureRatio: 0 } }, /rollback failure action must be pause or continue/],
    ["failure ratio above 1", { updateConfig: { parallelism: 1, delayMs: 0n, failureAction: 0, monitorMs: 0n, maxFailureRatio: 1.5 } }, /max failure ratio/],
    ["update parallelism past the replica bound", { updateConfig: { parallelism: 10_001, delayMs: 0n, failureAction: 0, monitorMs: 0n, maxFailureRatio: 0 } }, /parallelism/],
    ["bad constraint", { constraints: ["node.colour==red"] }, /unknown attribute/],
    ["two zones", { zone: "a", constraints: ["node.labels.zone==b"] }, /more than one zone/],
    ["bad zone", { zone: "-a" }, /zone/],
  ];
  for (const [what, extra, pattern] of bad) {
    await refusedWith(client.createService({ spec: spec(`s-${bad.findIndex((b) => b[0] === what)}`, extra) }), "INVALID_ARGUMENT", pattern).catch((err) => {
      throw new Error(`${what}: ${String(err)}`);
    });
  }
  assert.deepEqual(await client.listServices(), [], "no refused spec was stored");

  // Every good value of the same fields is accepted and kept as given.
  const good = await client.createService({
    spec: spec("good", {
      constraints: ["engine.labels.disk==ssd", "node.role!=manager"],
      zone: "a",
      restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ON_FAILURE, delayMs: 5000n, maxAttempts: 3, windowMs: 60_000n },
      updateConfig: { parallelism: 2, delayMs: 1000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK, monitorMs: 5000n, maxFailureRatio: 0.25 },
      rollbackConfig: { parallelism: 1, delayMs: 0n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE, monitorMs: 0n, maxFailureRatio: 0 },
      container: {
        image: "127.0.0.1:5000/app:1",
        command: ["sh"],
        env: ["A=1", "B="],
        limits: { memoryBytes: 256n << 20n, nanoCpus: 500_000_000n, pids: 64n },
        network: NetworkMode.NETWORK_MODE_HOST,
        user: "1000:1000",
        readOnly: true,
        capAdd: ["CAP_NET_BIND_SERVICE"],
        capDrop: ["ALL"],
        stopGracePeriodMs: 30_000n,
        dir: "/srv",
      },
    }),
  });
  assert.equal(good.spec!.container!.limits!.memoryBytes, 256n << 20n);
  assert.equal(good.spec!.container!.network, NetworkMode.NETWORK_MODE_HOST);
  assert.deepEqual(good.spec!.constraints, ["engine.labels.disk==ssd", "node.role!=manager"]);
  assert.equal(good.spec!.updateConfig!.maxFailureRatio, 0.25);

  // The same rules hold on update, and the mode cannot change.
  await refusedWith(update(client, good, (s) => (s.container!.limits!.memoryBytes = 1n)), "INVALID_ARGUMENT", /memory limit/);
  await refusedWith(update(client, good, (s) => {
    s.mode = ServiceMode.SERVICE_MODE_GLOBAL;
    s.replicas = 0;
  }), "INVALID_ARGUMENT", /mode of service "good" cannot change/);
  assert.equal((await client.getService(good.id)).meta!.version, good.meta!.version, "refused updates changed nothing");
});

test("control API: a zone-a secret attaches only to zone-a services, on create, update and secret-add", async (t) => {
  const { client } = await singleManager(t, "shoal-capi-zone-");
  const secretA = await client.createSecret({ spec: { name: "sa", labels: {}, data: Buffer.from("zone-a-password"), zone: "a" } });
  const plain = await client.createSecret({ spec: { name: "plain", labels: {}, data: Buffer.from("p"), zone: "" } });
  const ref = (s: { id: string; spec?: { name: string } }) => ({ secretId: s.id, secretName: s.spec!.name, target: s.spec!.name });

  for (const zone of ["b", ""]) {
    const message = await refusedWith(
      client.createService({ spec: spec(`svc-${zone || "default"}`, { zone, container: { command: ["true"], secrets: [ref(secretA)] } }) }),
      "PERMISSION_DENIED",
    );
    assert.match(message, /secret "sa" belongs to zone "a" and cannot be attached to a service of zone "(b|default)"/);
  }
  // A zone given by constraint counts as the service's zone, both ways.
  await refusedWith(client.createService({ spec: spec("by-constraint", { constraints: ["node.labels.zone==b"], container: { command: ["true"], secrets: [ref(secretA)] } }) }), "PERMISSION_DENIED");
  const viaConstraint = await client.createService({ spec: spec("in-a", { constraints: ["node.labels.zone==a"], container: { command: ["true"], secrets: [ref(secretA)] } }) });
  // engine.labels is node-reported: it can never put a service in a zone.
  await refusedWith(client.createService({ spec: spec("engine-zone", { constraints: ["engine.labels.zone==a"], container: { command: ["true"], secrets: [ref(secretA)] } }) }), "PERMISSION_DENIED");

  // update: moving a service holding the zone-a secret to zone b is refused.
  await refusedWith(update(client, viaConstraint, (s) => (s.constraints = ["node.labels.zone==b"])), "PERMISSION_DENIED", /belongs to zone "a"/);
  // secret-add (a new reference on update) to a zone-b service is refused; an unzoned secret is fine.
  const inB = await client.createService({ spec: spec("in-b", { zone: "b", container: { command: ["true"], secrets: [ref(plain)] } }) });
  await refusedWith(update(client, inB, (s) => s.container!.secrets.push(ref(secretA))), "PERMISSION_DENIED", /belongs to zone "a"/);
  // A reference by name only is resolved by the server, and still checked.
  await refusedWith(update(client, inB, (s) => s.container!.secrets.push({ secretId: "", secretName: "sa", target: "x" })), "PERMISSION_DENIED");
  const stored = await client.getService(inB.id);
  assert.deepEqual(stored.spec!.container!.secrets.map((s) => s.secretName), ["plain"], "the refused updates left the service as it was");

  const inA = await client.createService({ spec: spec("by-name", { zone: "a", container: { command: ["true"], secrets: [{ secretId: "", secretName: "sa", target: "" }] } }) });
  assert.equal(inA.spec!.container!.secrets[0]!.secretId, secretA.id);
  await refusedWith(client.createService({ spec: spec("ghost", { container: { command: ["true"], secrets: [{ secretId: "", secretName: "nope", target: "" }] } }) }), "NOT_FOUND", /secret "nope" does not exist/);
});

test("control API: rollback needs a previous spec; update and rollback swap spec and previous spec", async (t) => {
  const { client } = await singleManager(t, "shoal-capi-rollback-");
  const created = await client.createService({ spec: spec("web", { container: { command: ["sleep"], args: ["1"] } }) });
  const rollbackAt = (s: Service) => client.updateService({ serviceId: s.id, serviceVersion: s.meta!.version, spec: undefined, rollback: true });
  // Read-modify-write: the orchestrator writes the service too (its update status).
  const rollback = () => retryOnVersionConflict("rollback", async () => rollbackAt(await client.getService(created.id)));
  await refusedWith(rollback(), "FAILED_PRECONDITION", /no previous spec to roll back to/);

  const updated = await update(client, created, (s) => (s.container!.args = ["2"]));
  assert.deepEqual(updated.spec!.container!.args, ["2"]);
  assert.deepEqual(updated.previousSpec!.container!.args, ["1"]);

  // A stale version is refused like any compare-and-set.
  await refusedWith(rollbackAt(created), "VERSION_CONFLICT");
  const rolled = await rollback();
  assert.deepEqual(rolled.spec!.container!.args, ["1"]);
  assert.deepEqual(rolled.previousSpec!.container!.args, ["2"]);
  // The orchestrator may already have rolled it out (no task runs anywhere in this cluster).
  assert.ok([UpdateState.UPDATE_STATE_ROLLBACK_STARTED, UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED].includes(rolled.updateStatus!.state), `state ${rolled.updateStatus!.state}`);
  const again = await rollback();
  assert.deepEqual(again.spec!.container!.args, ["2"], "a second rollback undoes the first, as in Swarm");
});

test("control API: service rm marks the service pending delete; the orchestrator then deletes it and frees its secret", async (t) => {
  const { client } = await singleManager(t, "shoal-capi-rm-");
  const secret = await client.createSecret({ spec: { name: "db", labels: {}, data: Buffer.from("hunter2-very-secret"), zone: "" } });
  const created = await client.createService({ spec: spec("web", { container: { command: ["true"], secrets: [{ secretId: secret.id, secretName: "db", target: "db" }] } }) });
  await client.removeService(created.id);
  // Marked, or already deleted: with no task running anywhere the orchestrator deletes it at once.
  const marked = await client.getService(created.id).catch((err: unknown) => err);
  if (marked instanceof Error) assert.equal((marked as { code?: string }).code, "NOT_FOUND");
  else {
    assert.equal((marked as Service).pendingDelete, true);
    await client.removeService(created.id).catch((err: unknown) => assert.equal((err as { code?: string }).code, "NOT_FOUND")); // again: a no-op
  }
  await waitFor("the service to be deleted", async () => ((await client.listServices()).length === 0 ? true : undefined), 20_000);
  await client.removeSecret(secret.id);
  await client.createService({ spec: spec("web") });
  await refusedWith(client.removeService("x".repeat(25)), "NOT_FOUND");
  await refusedWith(client.removeService("bad"), "INVALID_ARGUMENT");
});

test("control API: secrets hold 1 B to 500 KiB, are refused while in use, and no read returns their bytes", async (t) => {
  const { client } = await singleManager(t, "shoal-capi-secret-");
  const data = Buffer.from("correct horse battery staple");
  await refusedWith(client.createSecret({ spec: { name: "empty", labels: {}, data: Buffer.alloc(0), zone: "" } }), "INVALID_ARGUMENT", /empty/);
  await refusedWith(client.createSecret({ spec: { name: "big", labels: {}, data: Buffer.alloc(MAX_SECRET_BYTES + 1, 7), zone: "" } }), "INVALID_ARGUMENT", /500 KiB/);
  await refusedWith(client.createSecret({ spec: { name: "z", labels: {}, data, zone: "bad zone" } }), "INVALID_ARGUMENT", /zone/);
  const max = await client.createSecret({ spec: { name: "max", labels: {}, data: Buffer.alloc(MAX_SECRET_BYTES, 7), zone: "" } });
  const s = await client.createSecret({ spec: { name: "pw", labels: {}, data, zone: "a" } });
  assert.equal(max.sizeBytes, MAX_SECRET_BYTES);
  for (const read of [s, await client.getSecret(s.id), ...(await client.listSecrets())]) {
    assert.equal(read.spec!.data.length, 0, "no read API returns data");
    assert.match(read.dataMac, /^[0-9a-f]{64}$/);
  }
  const svc = await client.createService({ spec: spec("app", { zone: "a", container: { command: ["true"], secrets: [{ secretId: s.id, secretName: "pw", target: "pw" }] } }) });
  await refusedWith(client.removeSecret(s.id), "FAILED_PRECONDITION", /in use by service "app"; remove it from the service first/);
  await update(client, svc, (spec) => (spec.container!.secrets = []));
  await client.removeSecret(s.id);
  assert.deepEqual((await client.listSecrets()).map((x) => x.spec!.name), ["max"]);
  // Nothing the control API answered carries the secret's bytes, in any encoding.
  const everything = JSON.stringify(
    { services: await client.listServices(), secrets: await client.listSecrets(), tasks: await client.listTasks({ serviceId: "", nodeId: "" }) },
    (_k, v) => (typeof v === "bigint" ? v.toString() : v),
  );
  assert.ok(!everything.includes(data.toString("utf8")) && !everything.includes(data.toString("base64")) && !everything.includes(data.toString("hex")));
});
