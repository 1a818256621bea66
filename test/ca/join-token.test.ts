// Join tokens: format, typed refusals, digest pinning, the manager's token set, and no secret in errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ManualClock } from "../../src/base/clock.js";
import { ShoalError } from "../../src/base/errors.js";
import {
  createRootCA,
  generateJoinToken,
  JoinTokenSet,
  JOIN_TOKEN_LENGTH,
  MAX_REPLACED_TOKENS_PER_ROLE,
  parseJoinToken,
  replacedRootDigests,
  verifyTokenDigest,
} from "../../src/ca/index.js";
import { Cluster } from "../../src/proto/shoal/v1/objects.js";
import { throwsCode } from "./fixtures.js";

const clock = new ManualClock(Date.UTC(2030, 0, 1));
const rootPromise = createRootCA({ clock });
const otherRootPromise = createRootCA({ clock });

test("generate and parse round trip: SWMTKN-1-<digest 50>-<secret 25>", async () => {
  const root = await rootPromise;
  const token = generateJoinToken(root);
  assert.equal(token.length, 85);
  assert.equal(JOIN_TOKEN_LENGTH, 85);
  assert.match(token, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
  const parsed = parseJoinToken(token);
  assert.equal(parsed.version, 1);
  assert.equal(parsed.caDigest, root.digest());
  assert.equal(token, `SWMTKN-1-${parsed.caDigest}-${parsed.secret}`);
  assert.notEqual(parseJoinToken(generateJoinToken(root)).secret, parsed.secret);
});

test("malformed tokens: empty, truncated, garbled, over-long, wrong separators", async () => {
  const root = await rootPromise;
  const token = generateJoinToken(root);
  const secret = parseJoinToken(token).secret;
  const bad = [
    "",
    "SWMTKN-1-",
    token.slice(0, -1),
    token.slice(0, 40),
    token + "a",
    token + token,
    "x".repeat(1_000_000),
    token.slice(0, -1) + "!",
    token.slice(0, 20) + "Q" + token.slice(21),
    token.toUpperCase(),
    token.replace("SWMTKN", "SWMKEY"),
    token.replace(/-(?=[0-9a-z]{25}$)/, "_"),
    " " + token.slice(1),
    token.slice(0, -1) + "\u00e9",
  ];
  for (const text of bad) {
    const err = throwsCode(() => parseJoinToken(text), "TOKEN_MALFORMED");
    assert.ok(!err.message.includes(secret), "message never contains the secret");
    assert.ok(!err.message.includes(token.slice(9, 30)), "message never echoes the token");
  }
  for (const notString of [undefined, null, 42, {}]) throwsCode(() => parseJoinToken(notString), "TOKEN_MALFORMED");
});

test("other versions are TOKEN_VERSION", async () => {
  const root = await rootPromise;
  const token = generateJoinToken(root);
  throwsCode(() => parseJoinToken(token.replace("SWMTKN-1-", "SWMTKN-2-")), "TOKEN_VERSION");
  throwsCode(() => parseJoinToken("SWMTKN-2-abc"), "TOKEN_VERSION");
  throwsCode(() => parseJoinToken(token.replace("SWMTKN-1-", "SWMTKN-2-") + "longer-than-allowed"), "TOKEN_VERSION");
  const err = throwsCode(() => parseJoinToken("SWMTKN-17"), "TOKEN_VERSION");
  assert.match(err.message, /version 17/);
});

test("verifyTokenDigest pins the root CA the joiner fetched", async () => {
  const root = await rootPromise;
  const other = await otherRootPromise;
  const token = generateJoinToken(root);
  verifyTokenDigest(token, root.certPem);
  verifyTokenDigest(parseJoinToken(token), Buffer.from(root.certPem));
  const err = throwsCode(() => verifyTokenDigest(token, other.certPem), "TOKEN_DIGEST_MISMATCH");
  assert.match(err.message, /another cluster's CA/);
  assert.ok(!err.message.includes(parseJoinToken(token).secret));
  // One changed byte of the bundle is enough.
  throwsCode(() => verifyTokenDigest(token, root.certPem.replace("\n-----END", "\n\n-----END")), "TOKEN_DIGEST_MISMATCH");
});

test("JoinTokenSet: roles, rotation, expiry, other clusters and unknown secrets", async () => {
  const root = await rootPromise;
  const other = await otherRootPromise;
  const set = JoinTokenSet.generate(root);
  const worker = set.token("swarm-worker");
  const manager = set.token("swarm-manager");
  assert.notEqual(worker, manager);
  assert.equal(set.match(worker, clock), "swarm-worker");
  assert.equal(set.match(manager, clock), "swarm-manager");

  const secrets: string[] = [parseJoinToken(worker).secret, parseJoinToken(manager).secret];
  const errors: ShoalError[] = [];
  const newWorker = set.rotate("swarm-worker");
  secrets.push(parseJoinToken(newWorker).secret);
  errors.push(throwsCode(() => set.match(worker, clock), "TOKEN_ROTATED"));
  assert.equal(set.match(newWorker, clock), "swarm-worker");
  assert.equal(set.match(manager, clock), "swarm-manager", "rotating one role leaves the other alone");

  errors.push(throwsCode(() => set.match(`SWMTKN-1-${root.digest()}-${"0".repeat(25)}`, clock), "TOKEN_INVALID"));
  errors.push(throwsCode(() => set.match(generateJoinToken(root), clock), "TOKEN_INVALID"));
  // The right secret with another CA's digest belongs to another cluster.
  errors.push(throwsCode(() => set.match(`SWMTKN-1-${other.digest()}-${parseJoinToken(manager).secret}`, clock), "TOKEN_DIGEST_MISMATCH"));
  errors.push(throwsCode(() => set.match(JoinTokenSet.generate(other).token("swarm-worker"), clock), "TOKEN_DIGEST_MISMATCH"));

  const expiresAt = new Date(clock.nowMs() + 3600_000);
  const expiring = set.rotate("swarm-manager", { expiresAt });
  secrets.push(parseJoinToken(expiring).secret);
  assert.deepEqual(set.expiresAt("swarm-manager"), expiresAt);
  assert.equal(set.expiresAt("swarm-worker"), undefined);
  assert.equal(set.match(expiring, new ManualClock(expiresAt.getTime() - 1)), "swarm-manager");
  errors.push(throwsCode(() => set.match(expiring, new ManualClock(expiresAt.getTime())), "TOKEN_EXPIRED"));
  errors.push(throwsCode(() => set.match(manager, clock), "TOKEN_ROTATED"));

  for (const err of errors) {
    for (const secret of secrets) assert.ok(!err.message.includes(secret), `${err.code} message leaks a secret`);
  }
});

test("JoinTokenSet survives the proto round trip (tokens, expiries and the rotated secrets)", async () => {
  const root = await rootPromise;
  const set = JoinTokenSet.generate(root);
  const old = set.token("swarm-worker");
  const expiresAt = new Date(clock.nowMs() + 60_000);
  set.rotate("swarm-worker", { expiresAt });
  const proto = set.toProto();
  assert.equal(proto.worker, set.token("swarm-worker"));
  assert.deepEqual(proto.workerExpiresAt, expiresAt);
  assert.equal(proto.managerExpiresAt, undefined);
  const restored = JoinTokenSet.fromProto(proto, root);
  assert.equal(restored.match(proto.worker, clock), "swarm-worker");
  assert.equal(restored.match(proto.manager, clock), "swarm-manager");
  throwsCode(() => restored.match(proto.worker, new ManualClock(expiresAt.getTime())), "TOKEN_EXPIRED");
  throwsCode(() => restored.match(old, clock), "TOKEN_ROTATED");
  assert.equal(proto.previousWorker, "", "a replaced token is no longer stored in full");
  assert.equal(proto.previousManager, "");
  assert.equal(proto.replacedWorker.length, 1);
  assert.equal(proto.replacedManager.length, 0);
  // Tokens of another root are refused when restoring.
  const other = await otherRootPromise;
  throwsCode(() => JoinTokenSet.fromProto(proto, other), "TOKEN_DIGEST_MISMATCH");
});

/** What a manager restart reads back: the set through the encoded cluster object. */
function restarted(set: JoinTokenSet, root: Awaited<typeof rootPromise>): { set: JoinTokenSet; bytes: Buffer } {
  const bytes = Buffer.from(Cluster.encode(Cluster.fromPartial({ rootCa: { joinTokens: set.toProto() } })).finish());
  return { set: JoinTokenSet.fromProto(Cluster.decode(bytes).rootCa!.joinTokens!, root), bytes };
}

test("every one of the last 16 replaced tokens of a role is refused as rotated, also after a restart; only a digest of each is stored", async () => {
  const root = await rootPromise;
  let set = JoinTokenSet.generate(root);
  const replaced: string[] = [];
  const manager = set.token("swarm-manager");
  for (let i = 0; i < MAX_REPLACED_TOKENS_PER_ROLE + 4; i++) {
    replaced.push(set.token("swarm-worker"));
    set.rotate("swarm-worker");
    // A restart now and then: the history is carried by the replicated cluster object.
    if (i % 5 === 4) set = restarted(set, root).set;
  }
  assert.equal(set.replacedCount("swarm-worker"), MAX_REPLACED_TOKENS_PER_ROLE);
  assert.equal(set.replacedCount("swarm-manager"), 0);
  const { set: after, bytes } = restarted(set, root);
  const recent = replaced.slice(-MAX_REPLACED_TOKENS_PER_ROLE);
  const older = replaced.slice(0, -MAX_REPLACED_TOKENS_PER_ROLE);
  for (const s of [set, after]) {
    for (const token of recent) throwsCode(() => s.match(token, clock), "TOKEN_ROTATED");
    // Past the bound a replaced token is still refused, only without the "rotated" hint.
    for (const token of older) throwsCode(() => s.match(token, clock), "TOKEN_INVALID");
    assert.equal(s.match(set.token("swarm-worker"), clock), "swarm-worker");
    assert.equal(s.match(manager, clock), "swarm-manager");
  }
  for (const token of replaced) {
    assert.ok(!bytes.includes(Buffer.from(parseJoinToken(token).secret)), "the stored cluster object holds no replaced secret");
  }
  assert.ok(bytes.length < 2048, `the token history stays small (${bytes.length} bytes)`);
  // Rotating the other role keeps both histories.
  const oldManager = set.token("swarm-manager");
  set.rotate("swarm-manager");
  throwsCode(() => restarted(set, root).set.match(oldManager, clock), "TOKEN_ROTATED");
  throwsCode(() => restarted(set, root).set.match(recent.at(-1)!, clock), "TOKEN_ROTATED");
});

test("tokens of every root the cluster rotated away from are refused as rotated, not as another cluster's", async () => {
  const rootA = await rootPromise;
  const rootB = await otherRootPromise;
  const rootC = await createRootCA({ clock });
  const setA = JoinTokenSet.generate(rootA);
  const firstWorkerA = setA.token("swarm-worker");
  setA.rotate("swarm-worker");
  const workerA = setA.token("swarm-worker");
  const managerA = setA.token("swarm-manager");
  const setB = restarted(setA.forNewRoot(rootB), rootB).set;
  const workerB = setB.token("swarm-worker");
  const setC = restarted(setB.forNewRoot(rootC), rootC).set;
  for (const token of [firstWorkerA, workerA, managerA, workerB]) throwsCode(() => setC.match(token, clock), "TOKEN_ROTATED");
  assert.equal(setC.match(setC.token("swarm-worker"), clock), "swarm-worker");
  // A root this cluster never had is another cluster's, even with a secret it once used.
  const stranger = await createRootCA({ clock });
  throwsCode(() => setC.match(`SWMTKN-1-${stranger.digest()}-${parseJoinToken(workerA).secret}`, clock), "TOKEN_DIGEST_MISMATCH");
  // The joiner-side hint: the roots the replaced tokens pinned.
  assert.deepEqual(new Set(replacedRootDigests(setC.toProto(), rootC.digest())), new Set([rootA.digest(), rootB.digest()]));
});

test("a store written before the history (previous_* in full) is read: that token is refused as rotated and written back as a digest", async () => {
  const root = await rootPromise;
  const set = JoinTokenSet.generate(root);
  const old = set.token("swarm-worker");
  set.rotate("swarm-worker");
  const legacy = { ...set.toProto(), previousWorker: old, replacedWorker: [] };
  const read = JoinTokenSet.fromProto(legacy, root);
  throwsCode(() => read.match(old, clock), "TOKEN_ROTATED");
  const written = read.toProto();
  assert.equal(written.previousWorker, "");
  assert.equal(written.replacedWorker.length, 1);
  throwsCode(() => JoinTokenSet.fromProto(written, root).match(old, clock), "TOKEN_ROTATED");
});

test("property: parseJoinToken throws only TOKEN_MALFORMED / TOKEN_VERSION ShoalErrors, never leaking the secret", async () => {
  const root = await rootPromise;
  const token = generateJoinToken(root);
  const secret = parseJoinToken(token).secret;
  const check = (text: string): void => {
    try {
      const parsed = parseJoinToken(text);
      assert.match(text, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
      assert.equal(parsed.secret.length, 25);
    } catch (err) {
      assert.ok(err instanceof ShoalError, `non-ShoalError for ${JSON.stringify(text)}: ${String(err)}`);
      assert.ok(err.code === "TOKEN_MALFORMED" || err.code === "TOKEN_VERSION", err.code);
      assert.ok(!err.message.includes(secret));
    }
  };
  fc.assert(fc.property(fc.string({ maxLength: 200 }), check), { numRuns: 2000 });
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), check), { numRuns: 1000 });
  // Mutations of a real token: a slice, a splice of arbitrary text, a changed character.
  fc.assert(
    fc.property(fc.nat(85), fc.nat(85), fc.string({ maxLength: 10 }), (from, to, insert) => {
      check(token.slice(0, Math.min(from, to)) + insert + token.slice(Math.max(from, to)));
    }),
    { numRuns: 3000 },
  );
  fc.assert(fc.property(fc.stringMatching(/^SWMTKN-[0-9]{1,3}-[0-9a-z-]{0,90}$/), check), { numRuns: 1000 });
});
