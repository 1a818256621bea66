// Prefetch grants: a round trip through a verify-only root, every byte of the signed body and of the
// signature tampered, another CA's signature, each expectation's own code, expiry by the passed time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ManualClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import {
  createRootCA,
  MAX_GRANT_BYTES,
  MAX_GRANT_LIFETIME_MS,
  RootCA,
  signGrant,
  verifyGrant,
  type GrantExpectation,
  type PrefetchGrant,
} from "../../src/ca/index.js";
import { throwsCode } from "./fixtures.js";

const NOW_MS = Date.UTC(2030, 0, 1);
const rootPromise = createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });
const otherRootPromise = createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });

function blobDigest(text: string): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

function aGrant(overrides: Partial<PrefetchGrant> = {}): PrefetchGrant {
  return { jobId: newId(), clusterId: newId(), zone: "zone-a", nodeId: newId(), blobDigest: blobDigest("layer"), expiresAtMs: NOW_MS + 5 * 60_000, ...overrides };
}

function expectationOf(grant: PrefetchGrant, nowMs = NOW_MS): GrantExpectation {
  return { clusterId: grant.clusterId, zone: grant.zone, nodeId: grant.nodeId, blobDigest: grant.blobDigest, nowMs };
}

test("a signed grant verifies with the root certificate alone and returns its fields", async () => {
  const root = await rootPromise;
  const grant = aGrant();
  const bytes = signGrant(root, grant);
  assert.ok(bytes.length <= MAX_GRANT_BYTES);
  const workerRoot = RootCA.fromCertOnly(root.certPem);
  assert.deepEqual(verifyGrant(workerRoot, bytes, expectationOf(grant)), grant);
  // A Uint8Array view into a larger buffer (as protobuf decoding gives) verifies too.
  const framed = Buffer.concat([Buffer.from("xx"), bytes, Buffer.from("yy")]);
  assert.deepEqual(verifyGrant(workerRoot, new Uint8Array(framed.buffer, framed.byteOffset + 2, bytes.length), expectationOf(grant)), grant);
});

test("a verify-only root cannot sign grants", async () => {
  const root = RootCA.fromCertOnly((await rootPromise).certPem);
  throwsCode(() => signGrant(root, aGrant()), "FAILED_PRECONDITION");
});

test("bad fields are refused at signing with INVALID_ARGUMENT", async () => {
  const root = await rootPromise;
  for (const bad of [
    { jobId: "" },
    { jobId: "x".repeat(129) },
    { clusterId: "short" },
    { zone: "bad zone" },
    { nodeId: "N".repeat(25) },
    { blobDigest: "sha256:abc" },
    { blobDigest: "md5:" + "0".repeat(64) },
    { expiresAtMs: 0 },
    { expiresAtMs: 1.5 },
  ]) {
    throwsCode(() => signGrant(root, aGrant(bad)), "INVALID_ARGUMENT");
  }
});

test("flipping any bit of any byte, or cutting or extending the bytes, gives GRANT_INVALID", async () => {
  const root = await rootPromise;
  const grant = aGrant();
  const bytes = signGrant(root, grant);
  for (let i = 0; i < bytes.length; i++) {
    for (const bit of [0x01, 0x80]) {
      const tampered = Buffer.from(bytes);
      tampered[i] = tampered[i]! ^ bit;
      throwsCode(() => verifyGrant(root, tampered, expectationOf(grant)), "GRANT_INVALID");
    }
  }
  throwsCode(() => verifyGrant(root, bytes.subarray(0, bytes.length - 1), expectationOf(grant)), "GRANT_INVALID");
  throwsCode(() => verifyGrant(root, Buffer.concat([bytes, Buffer.from([0])]), expectationOf(grant)), "GRANT_INVALID");
  throwsCode(() => verifyGrant(root, Buffer.alloc(0), expectationOf(grant)), "GRANT_INVALID");
  throwsCode(() => verifyGrant(root, Buffer.alloc(MAX_GRANT_BYTES + 1, 1), expectationOf(grant)), "GRANT_INVALID");
});

test("a grant signed by another CA, or a body spliced with another grant's signature, gives GRANT_INVALID", async () => {
  const root = await rootPromise;
  const other = await otherRootPromise;
  const grant = aGrant();
  throwsCode(() => verifyGrant(root, signGrant(other, grant), expectationOf(grant)), "GRANT_INVALID");
  // Splicing: the body of one grant with the signature of another (both by the right CA).
  const a = signGrant(root, grant);
  const b = signGrant(root, { ...grant, expiresAtMs: grant.expiresAtMs + 1 });
  const spliced = Buffer.concat([b.subarray(0, b.length - 64), a.subarray(a.length - 64)]);
  throwsCode(() => verifyGrant(root, spliced, expectationOf(grant)), "GRANT_INVALID");
});

test("with the two roots of a root CA rotation, a grant signed by either is accepted, one by a third CA is not", async () => {
  const root = await rootPromise;
  const other = await otherRootPromise;
  const third = await createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });
  const grant = aGrant();
  const trusted = [RootCA.fromCertOnly(root.certPem), RootCA.fromCertOnly(other.certPem)];
  assert.deepEqual(verifyGrant(trusted, signGrant(root, grant), expectationOf(grant)), grant);
  assert.deepEqual(verifyGrant(trusted, signGrant(other, grant), expectationOf(grant)), grant);
  throwsCode(() => verifyGrant(trusted, signGrant(third, grant), expectationOf(grant)), "GRANT_INVALID");
  throwsCode(() => verifyGrant([], signGrant(root, grant), expectationOf(grant)), "GRANT_INVALID");
});

test("each expectation mismatch has its own code", async () => {
  const root = await rootPromise;
  const grant = aGrant();
  const bytes = signGrant(root, grant);
  const base = expectationOf(grant);
  throwsCode(() => verifyGrant(root, bytes, { ...base, clusterId: newId() }), "GRANT_WRONG_CLUSTER");
  throwsCode(() => verifyGrant(root, bytes, { ...base, zone: "zone-b" }), "GRANT_WRONG_ZONE");
  throwsCode(() => verifyGrant(root, bytes, { ...base, nodeId: newId() }), "GRANT_WRONG_NODE");
  throwsCode(() => verifyGrant(root, bytes, { ...base, blobDigest: blobDigest("another layer") }), "GRANT_WRONG_BLOB");
});

test("expiry is judged by the passed nowMs, not the wall clock", async () => {
  const root = await rootPromise;
  const grant = aGrant({ expiresAtMs: NOW_MS + 60_000 });
  const bytes = signGrant(root, grant);
  assert.equal(verifyGrant(root, bytes, expectationOf(grant, NOW_MS + 59_999)).jobId, grant.jobId);
  throwsCode(() => verifyGrant(root, bytes, expectationOf(grant, NOW_MS + 60_000)), "GRANT_EXPIRED");
  throwsCode(() => verifyGrant(root, bytes, expectationOf(grant, NOW_MS + 3600_000)), "GRANT_EXPIRED");
  // The wall clock (years before 2030 when this was written) would call it valid; nowMs decides.
  assert.ok(Date.now() < grant.expiresAtMs);
});

test("a grant that claims to live far longer than the limit is refused as GRANT_INVALID", async () => {
  const root = await rootPromise;
  const grant = aGrant({ expiresAtMs: NOW_MS + 24 * 3600_000 });
  throwsCode(() => verifyGrant(root, signGrant(root, grant), expectationOf(grant)), "GRANT_INVALID");
  const atLimit = aGrant({ expiresAtMs: NOW_MS + MAX_GRANT_LIFETIME_MS });
  assert.equal(verifyGrant(root, signGrant(root, atLimit), expectationOf(atLimit)).expiresAtMs, atLimit.expiresAtMs);
});

test("no error message carries the grant bytes", async () => {
  const root = await rootPromise;
  const other = await otherRootPromise;
  const grant = aGrant();
  const bytes = signGrant(other, grant);
  const base = expectationOf(grant);
  const messages: string[] = [];
  for (const expect of [base, { ...base, nodeId: newId() }, { ...base, nowMs: NOW_MS + 3600_000 }]) {
    try {
      verifyGrant(expect === base ? root : other, bytes, expect);
    } catch (err) {
      messages.push((err as Error).message);
    }
  }
  assert.equal(messages.length, 3);
  for (const m of messages) {
    for (const form of [bytes.toString("base64"), bytes.toString("hex"), bytes.subarray(-64).toString("base64"), bytes.subarray(-64).toString("hex")]) {
      assert.ok(!m.includes(form), m);
    }
  }
});
