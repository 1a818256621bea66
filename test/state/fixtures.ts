// Builders of valid store objects and a helper that runs a transaction through prepare + apply.
import assert from "node:assert/strict";
import { newId } from "../../src/base/ids.js";
import { Cluster, Node, NodeRole, Secret, Service, Task, TaskState } from "../../src/proto/shoal/v1/objects.js";
import type { ApplyResult, ObjectStore, StoreTransaction } from "../../src/state/index.js";

export const T0 = new Date("2026-01-01T00:00:00.000Z");

export function makeNode(overrides: Partial<Node> = {}, labels: Record<string, string> = {}): Node {
  return Node.fromPartial({
    id: newId(),
    role: NodeRole.NODE_ROLE_WORKER,
    spec: { desiredRole: NodeRole.NODE_ROLE_WORKER, labels },
    description: { hostname: "host-1" },
    ...overrides,
  });
}

export function makeService(name: string, spec: Partial<Service["spec"]> = {}, id = newId()): Service {
  return Service.fromPartial({ id, spec: { name, replicas: 1, container: { image: "127.0.0.1:5000/busybox:1", command: ["sleep", "1"] }, ...spec } });
}

export function makeTask(serviceId: string, overrides: Partial<Task> = {}): Task {
  return Task.fromPartial({
    id: newId(),
    serviceId,
    slot: 1,
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_NEW },
    ...overrides,
  });
}

export function makeSecret(name: string, data: Buffer, zone = ""): Secret {
  return Secret.fromPartial({ id: newId(), spec: { name, data, zone } });
}

export const CA_KEY_MARKER = "CA-KEY-MARKER-7f3a9c";
export const UNLOCK_MARKER = "SWMKEY-1-UNLOCKMARKERqq81";
export const TOKEN_MARKER = "SWMTKN-1-TOKENMARKERzz55";
export const SECRET_MAC_KEY_MARKER = "MACKEYMARKER-31d7";

export function makeCluster(): Cluster {
  return Cluster.fromPartial({
    id: newId(),
    spec: { name: "default" },
    rootCa: {
      caCertPem: Buffer.from("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
      caKeyPem: Buffer.from(`-----BEGIN PRIVATE KEY-----\n${CA_KEY_MARKER}\n-----END PRIVATE KEY-----\n`),
      caDigest: "0".repeat(50),
      joinTokens: {
        worker: TOKEN_MARKER + "-worker",
        manager: TOKEN_MARKER + "-manager",
        // The tokens rotation replaced are join tokens too (proto JoinTokens previous_*).
        previousWorker: TOKEN_MARKER + "-previous-worker",
        previousManager: TOKEN_MARKER + "-previous-manager",
      },
    },
    unlockKey: UNLOCK_MARKER,
    revocationList: { nodes: [] },
    secretMacKey: Buffer.from(SECRET_MAC_KEY_MARKER.padEnd(32, "k")),
  });
}

/** Prepares and applies at the next index; asserts it applied and returns the result. */
export function commit(store: ObjectStore, build: (tx: StoreTransaction) => void, now = T0): ApplyResult & { ok: true } {
  const bytes = store.prepare(build, { now });
  const result = store.apply(bytes, { index: store.lastAppliedIndex + 1 });
  if (!result.ok) assert.fail(`expected the proposal to apply, got ${result.error.code}: ${result.error.message}`);
  return result;
}

/** The code of the ShoalError `fn` throws. */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? `non-ShoalError: ${String(err)}`;
  }
  return "did not throw";
}
