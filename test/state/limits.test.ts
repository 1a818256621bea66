// Every limit at its bound (accepted) and one past it (refused), at prepare and again at apply.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newId } from "../../src/base/ids.js";
import { StoreProposal } from "../../src/proto/shoal/v1/store.js";
import {
  MAX_ACTIONS_PER_PROPOSAL,
  MAX_CONSTRAINTS,
  MAX_KV_KEY_BYTES,
  MAX_KV_VALUE_BYTES,
  MAX_LABEL_KEY_BYTES,
  MAX_LABEL_VALUE_BYTES,
  MAX_LABELS,
  MAX_NAME_CHARS,
  MAX_PROPOSAL_BYTES,
  MAX_REPLICAS,
  MAX_SECRET_BYTES,
  ObjectStore,
  type StoreTransaction,
} from "../../src/state/index.js";
import { commit, makeNode, makeSecret, makeService, T0, thrownCode } from "./fixtures.js";

function accepts(build: (tx: StoreTransaction) => void): void {
  commit(new ObjectStore(), build);
}
function refuses(build: (tx: StoreTransaction) => void, code = "INVALID_ARGUMENT"): void {
  assert.equal(thrownCode(() => new ObjectStore().prepare(build)), code);
}
function labels(count: number, keyBytes = 4, valueBytes = 1): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < count; i++) out[String(i).padStart(keyBytes, "k")] = "v".repeat(valueBytes);
  return out;
}

test("secret data: 500 KiB accepted, one byte more refused, empty refused", () => {
  accepts((tx) => tx.createSecret(makeSecret("s", Buffer.alloc(MAX_SECRET_BYTES, 1))));
  refuses((tx) => tx.createSecret(makeSecret("s", Buffer.alloc(MAX_SECRET_BYTES + 1, 1))));
  refuses((tx) => tx.createSecret(makeSecret("s", Buffer.alloc(0))));
  assert.equal(MAX_SECRET_BYTES, 512_000);
});

test("names: 64 characters of [a-zA-Z0-9][a-zA-Z0-9_.-]* accepted; 65, empty or bad characters refused", () => {
  accepts((tx) => tx.createService(makeService("a".repeat(MAX_NAME_CHARS))));
  accepts((tx) => tx.createService(makeService("Web_1.prod-x")));
  refuses((tx) => tx.createService(makeService("a".repeat(MAX_NAME_CHARS + 1))));
  for (const bad of ["", "-web", ".web", "_web", "web app", "web/app", "wéb", "a\n"]) {
    refuses((tx) => tx.createService(makeService(bad)));
    refuses((tx) => tx.createSecret(makeSecret(bad, Buffer.from("x"))));
  }
});

test("labels: 64 pairs accepted, 65 refused; key and value lengths at and past the bound", () => {
  accepts((tx) => tx.createService(makeService("s", { labels: labels(MAX_LABELS) })));
  refuses((tx) => tx.createService(makeService("s", { labels: labels(MAX_LABELS + 1) })));
  accepts((tx) => tx.createNode(makeNode({}, labels(MAX_LABELS))));
  refuses((tx) => tx.createNode(makeNode({}, labels(MAX_LABELS + 1))));
  accepts((tx) => tx.createSecret({ ...makeSecret("s", Buffer.from("x")), spec: { name: "s", data: Buffer.from("x"), zone: "", labels: labels(1, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES) } }));
  refuses((tx) => tx.createService(makeService("s", { labels: labels(1, MAX_LABEL_KEY_BYTES + 1) })));
  refuses((tx) => tx.createService(makeService("s", { labels: labels(1, 4, MAX_LABEL_VALUE_BYTES + 1) })));
  refuses((tx) => tx.createService(makeService("s", { labels: { "": "v" } })));
});

test("replicas: 10,000 accepted, 10,001 refused", () => {
  accepts((tx) => tx.createService(makeService("s", { replicas: MAX_REPLICAS })));
  refuses((tx) => tx.createService(makeService("s", { replicas: MAX_REPLICAS + 1 })));
});

test("constraints: 64 accepted, 65 refused", () => {
  const many = (n: number) => Array.from({ length: n }, (_, i) => `node.labels.k${i}==v`);
  accepts((tx) => tx.createService(makeService("s", { constraints: many(MAX_CONSTRAINTS) })));
  refuses((tx) => tx.createService(makeService("s", { constraints: many(MAX_CONSTRAINTS + 1) })));
  refuses((tx) => tx.createService(makeService("s", { constraints: ["node.labels.zone=pci"] })));
});

test("kv: key 256 bytes and value 64 KiB accepted; one more byte of either refused; empty key refused", () => {
  accepts((tx) => tx.putValue("k".repeat(MAX_KV_KEY_BYTES), Buffer.alloc(MAX_KV_VALUE_BYTES)));
  refuses((tx) => tx.putValue("k".repeat(MAX_KV_KEY_BYTES + 1), Buffer.from("v")));
  refuses((tx) => tx.putValue("é".repeat(MAX_KV_KEY_BYTES / 2 + 1), Buffer.from("v"))); // bytes, not characters
  refuses((tx) => tx.putValue("k", Buffer.alloc(MAX_KV_VALUE_BYTES + 1)));
  refuses((tx) => tx.putValue("", Buffer.from("v")));
});

/** A proposal of kv puts whose encoding is exactly `targetBytes` long. */
function proposalOfSize(targetBytes: number): Uint8Array {
  const store = new ObjectStore();
  const proposalId = newId();
  const chunks = Math.ceil(targetBytes / MAX_KV_VALUE_BYTES) + 1;
  const fillBytes = Math.min(MAX_KV_VALUE_BYTES, Math.floor((targetBytes - 2000) / (chunks - 1)));
  let lastBytes = 1000;
  for (let attempt = 0; attempt < 50; attempt++) {
    const build = (tx: StoreTransaction): void => {
      for (let i = 0; i < chunks - 1; i++) tx.putValue(`k${i}`, Buffer.alloc(fillBytes));
      tx.putValue("last", Buffer.alloc(lastBytes));
    };
    const proposal = StoreProposal.decode(store.prepare(build, { proposalId, now: T0 }));
    const bytes = StoreProposal.encode(proposal).finish();
    if (bytes.length === targetBytes) return bytes;
    lastBytes += targetBytes - bytes.length;
  }
  throw new Error("could not hit the size exactly");
}

test("proposal size: exactly 1 MiB applies; one byte more is refused at prepare and at apply", () => {
  const atBound = proposalOfSize(MAX_PROPOSAL_BYTES);
  assert.equal(atBound.length, MAX_PROPOSAL_BYTES);
  assert.equal(new ObjectStore().apply(atBound, { index: 1 }).ok, true);

  // Past the bound: the same shape with the last value one byte longer.
  const over = StoreProposal.decode(atBound);
  over.actions.at(-1)!.kv!.value = Buffer.alloc(over.actions.at(-1)!.kv!.value.length + 1);
  const overBytes = StoreProposal.encode(over).finish();
  assert.equal(overBytes.length, MAX_PROPOSAL_BYTES + 1);
  const result = new ObjectStore().apply(overBytes, { index: 1 });
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.error.code, "PROPOSAL_TOO_LARGE");

  refuses((tx) => {
    for (let i = 0; i < 17; i++) tx.putValue(`k${i}`, Buffer.alloc(MAX_KV_VALUE_BYTES));
  }, "PROPOSAL_TOO_LARGE");
});

test("apply re-checks limits: a proposal edited past a bound after prepare is refused, not applied", () => {
  const store = new ObjectStore();
  const proposal = StoreProposal.decode(store.prepare((tx) => tx.createService(makeService("s", { replicas: MAX_REPLICAS }))));
  proposal.actions[0]!.service!.spec!.replicas = MAX_REPLICAS + 1;
  const result = store.apply(StoreProposal.encode(proposal).finish(), { index: 1 });
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.error.code, "INVALID_ARGUMENT");
  assert.equal(store.listServices().length, 0);
});

test("actions per proposal: 10,000 accepted, 10,001 refused with PROPOSAL_TOO_LARGE", () => {
  accepts((tx) => { for (let i = 0; i < MAX_ACTIONS_PER_PROPOSAL; i++) tx.putValue(`k${i}`, Buffer.from("v")); });
  refuses((tx) => { for (let i = 0; i <= MAX_ACTIONS_PER_PROPOSAL; i++) tx.putValue(`k${i}`, Buffer.from("v")); }, "PROPOSAL_TOO_LARGE");
});

test("one transaction may create thousands of uniquely named services, but not one name twice", () => {
  const store = new ObjectStore();
  commit(store, (tx) => { for (let i = 0; i < 5000; i++) tx.createService(makeService(`svc-${i}`)); });
  assert.equal(store.listServices().length, 5000);
  assert.equal(thrownCode(() => store.prepare((tx) => tx.createService(makeService("SVC-4999")))), "ALREADY_EXISTS");
  refuses((tx) => { for (let i = 0; i < 3; i++) tx.createService(makeService("same")); }, "ALREADY_EXISTS");
});
