// Property: two stores fed the same committed entries take the same decisions and hold identical
// state (snapshot bytes), including proposals that race and go stale; a refused proposal changes
// nothing. Transactions are random (fast-check), prepared in rounds against one store so that
// several are in flight at once, as on a busy leader.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { StoreSnapshot } from "../../src/proto/shoal/v1/store.js";
import { ObjectStore, type StoreTransaction } from "../../src/state/index.js";
import { makeSecret, makeService, makeTask } from "./fixtures.js";

const NAMES = ["alpha", "beta", "gamma", "delta"];
const ZONES = ["", "a", "b"];

type Op =
  | { op: "createService"; name: number; zone: number; replicas: number }
  | { op: "scaleService"; name: number; replicas: number; stale: boolean }
  | { op: "removeService"; name: number }
  | { op: "createSecret"; name: number; zone: number }
  | { op: "attachSecret"; service: number; secret: number }
  | { op: "removeSecret"; name: number }
  | { op: "putValue"; key: number; mode: "any" | "cas" | "absent" }
  | { op: "createTask"; service: number }
  | { op: "moveTask"; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("createService" as const), name: fc.nat(3), zone: fc.nat(2), replicas: fc.nat(10) }),
  fc.record({ op: fc.constant("scaleService" as const), name: fc.nat(3), replicas: fc.nat(10), stale: fc.boolean() }),
  fc.record({ op: fc.constant("removeService" as const), name: fc.nat(3) }),
  fc.record({ op: fc.constant("createSecret" as const), name: fc.nat(3), zone: fc.nat(2) }),
  fc.record({ op: fc.constant("attachSecret" as const), service: fc.nat(3), secret: fc.nat(3) }),
  fc.record({ op: fc.constant("removeSecret" as const), name: fc.nat(3) }),
  fc.record({ op: fc.constant("putValue" as const), key: fc.nat(2), mode: fc.constantFrom("any" as const, "cas" as const, "absent" as const) }),
  fc.record({ op: fc.constant("createTask" as const), service: fc.nat(3) }),
  fc.record({ op: fc.constant("moveTask" as const), pick: fc.nat(50) }),
);

function run(tx: StoreTransaction, store: ObjectStore, op: Op): void {
  switch (op.op) {
    case "createService":
      tx.createService(makeService(NAMES[op.name]!, { zone: ZONES[op.zone]!, replicas: op.replicas }));
      return;
    case "scaleService": {
      const s = tx.findServiceByName(NAMES[op.name]!);
      if (s === undefined) return;
      s.spec!.replicas = op.replicas;
      if (op.stale) s.meta!.version += 1n;
      tx.updateService(s);
      return;
    }
    case "removeService": {
      const s = tx.findServiceByName(NAMES[op.name]!);
      if (s !== undefined) tx.removeService(s.id, { version: s.meta!.version });
      return;
    }
    case "createSecret":
      tx.createSecret(makeSecret(NAMES[op.name]!, Buffer.from(`data-${op.name}`), ZONES[op.zone]!));
      return;
    case "attachSecret": {
      const s = tx.findServiceByName(NAMES[op.service]!);
      const secret = tx.findSecretByName(NAMES[op.secret]!);
      if (s === undefined || secret === undefined) return;
      s.spec!.container!.secrets.push({ secretId: secret.id, secretName: secret.spec!.name, target: "" });
      tx.updateService(s);
      return;
    }
    case "removeSecret": {
      const secret = tx.findSecretByName(NAMES[op.name]!);
      if (secret !== undefined) tx.removeSecret(secret.id);
      return;
    }
    case "putValue": {
      const key = `key-${op.key}`;
      const current = tx.getValue(key);
      const value = Buffer.from(String(store.lastAppliedIndex));
      if (op.mode === "absent") tx.putValue(key, value, { ifAbsent: true });
      else if (op.mode === "cas" && current !== undefined) tx.putValue(key, value, { ifVersion: current.version });
      else tx.putValue(key, value);
      return;
    }
    case "createTask": {
      const s = tx.findServiceByName(NAMES[op.service]!);
      if (s !== undefined) tx.createTask(makeTask(s.id, { zone: s.spec!.zone }));
      return;
    }
    case "moveTask": {
      const tasks = store.listTasks();
      if (tasks.length === 0) return;
      const t = tasks[op.pick % tasks.length]!;
      t.slot += 1;
      tx.updateTask(t);
      return;
    }
  }
}

/** Snapshot bytes with the applied index cleared, to compare state across a refused proposal. */
function stateOnly(store: ObjectStore): Uint8Array {
  const snap = StoreSnapshot.decode(store.snapshot());
  snap.version = 0n;
  return StoreSnapshot.encode(snap).finish();
}

test("two stores in lockstep take identical decisions and hold identical snapshots", () => {
  let refusedSeen = 0;
  let appliedSeen = 0;
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.array(opArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 0, max: 2 ** 40 }),
      (rounds, startMs) => {
        const leader = new ObjectStore();
        const follower = new ObjectStore();
        let now = startMs;
        for (const round of rounds) {
          // Every transaction of a round is prepared against the same state, then all commit.
          const proposals: Uint8Array[] = [];
          for (const ops of round) {
            now += 1000;
            try {
              proposals.push(leader.prepare((tx) => { for (const op of ops) run(tx, leader, op); }, { now: new Date(now) }));
            } catch {
              // Refused up front (or empty): nothing to propose.
            }
          }
          for (const bytes of proposals) {
            const index = leader.lastAppliedIndex + 1;
            const before = stateOnly(leader);
            const a = leader.apply(bytes, { index });
            const b = follower.apply(bytes, { index });
            assert.equal(a.ok, b.ok);
            if (!a.ok && !b.ok) {
              refusedSeen++;
              assert.equal(a.error.code, b.error.code);
              assert.equal(a.error.message, b.error.message);
              assert.deepEqual(stateOnly(leader), before, "a refused proposal changed the state");
            } else {
              appliedSeen++;
            }
            assert.deepEqual(leader.snapshot(), follower.snapshot());
          }
        }
        // And a third store restored from the snapshot continues identically.
        const restored = ObjectStore.restore(follower.snapshot());
        assert.deepEqual(restored.snapshot(), leader.snapshot());
      },
    ),
    { numRuns: 150, seed: 20261123 },
  );
  // The property only means something if both outcomes happened.
  assert.ok(refusedSeen > 40, `only ${refusedSeen} refused proposals`);
  assert.ok(appliedSeen > 100, `only ${appliedSeen} applied proposals`);
});
