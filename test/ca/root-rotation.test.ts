// Root CA rotation in the CA library: the cross-signed certificate (the new root's subject and key,
// issued by the old root, so that a node trusting only the old root accepts a leaf under the new
// one), the refusals of an imported root, and the join tokens after a rotation (JoinTokenSet.forNewRoot).
import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto, KeyObject, X509Certificate } from "node:crypto";
import { ManualClock } from "../../src/base/clock.js";
import { createRootCA, crossSignRoot, importRootCA, JoinTokenSet, parseJoinToken, generateJoinToken, splitPemBundle } from "../../src/ca/index.js";
import { x509 } from "../../src/ca/x509-provider.js";
import { issue, openssl, tempDir, throwsCode, writeFiles } from "./fixtures.js";

// Real time: openssl checks validity against the wall clock.
const clock = new ManualClock(Date.now());
const oldRootPromise = createRootCA({ clock });
const newRootPromise = createRootCA({ clock });

test("the cross-signed certificate has the new root's subject and key and is issued (signed) by the old root", async () => {
  const [oldRoot, newRoot] = await Promise.all([oldRootPromise, newRootPromise]);
  const crossPem = await crossSignRoot(oldRoot, newRoot, { clock });
  const cross = new X509Certificate(crossPem);
  assert.equal(cross.subject, newRoot.certificate.subject);
  assert.ok(Buffer.from(new x509.X509Certificate(crossPem).subjectName.toArrayBuffer()).equals(Buffer.from(new x509.X509Certificate(newRoot.certPem).subjectName.toArrayBuffer())), "same subject bytes");
  assert.ok(cross.publicKey.export({ type: "spki", format: "der" }).equals(newRoot.publicKey.export({ type: "spki", format: "der" })), "the new root's key");
  assert.equal(cross.issuer, oldRoot.certificate.subject);
  assert.ok(cross.verify(oldRoot.publicKey), "signed by the old root's key");
  assert.ok(!cross.verify(newRoot.publicKey), "not self-signed");
  assert.ok(cross.ca, "a CA certificate");
  assert.ok(new Date(cross.validTo).getTime() <= Math.min(oldRoot.notAfter.getTime(), newRoot.notAfter.getTime()), "expires no later than either root");
  assert.notEqual(cross.serialNumber, newRoot.certificate.serialNumber);
});

test("a leaf under the new root verifies with only the old root trusted, through the cross-signed certificate (openssl)", async (t) => {
  const [oldRoot, newRoot] = await Promise.all([oldRootPromise, newRootPromise]);
  const dir = tempDir(t);
  const leaf = await issue(newRoot, clock);
  writeFiles(dir, {
    "old.pem": oldRoot.certPem,
    "new.pem": newRoot.certPem,
    "cross.pem": await crossSignRoot(oldRoot, newRoot, { clock }),
    "leaf.pem": splitPemBundle(leaf.certPem)[0]!,
  });
  const through = openssl(["verify", "-CAfile", "old.pem", "-untrusted", "cross.pem", "leaf.pem"], dir);
  assert.equal(through.status, 0, through.output);
  assert.notEqual(openssl(["verify", "-CAfile", "old.pem", "leaf.pem"], dir).status, 0, "without the cross-signed certificate the old root alone does not");
  assert.equal(openssl(["verify", "-CAfile", "new.pem", "leaf.pem"], dir).status, 0, "the new root alone does");
  // A leaf under the old root is not accepted through it by a node that trusts only the new root.
  writeFiles(dir, { "old-leaf.pem": splitPemBundle((await issue(oldRoot, clock)).certPem)[0]! });
  assert.notEqual(openssl(["verify", "-CAfile", "new.pem", "-untrusted", "cross.pem", "old-leaf.pem"], dir).status, 0);
});

async function selfSigned(keys: CryptoKeyPair, algorithm: (EcKeyGenParams & { hash: string }) | RsaHashedKeyGenParams, ca: boolean): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=imported",
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 365 * 24 * 3600_000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [new x509.BasicConstraintsExtension(ca, undefined, true), new x509.KeyUsagesExtension(ca ? x509.KeyUsageFlags.keyCertSign : x509.KeyUsageFlags.digitalSignature, true)],
  });
  return cert.toString("pem") + "\n";
}

async function keyPair(algorithm: (EcKeyGenParams & { hash: string }) | RsaHashedKeyGenParams): Promise<{ keys: CryptoKeyPair; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  return { keys, keyPem: KeyObject.from(keys.privateKey).export({ type: "pkcs8", format: "pem" }).toString() };
}

test("importRootCA: a matching P-256 CA pair loads; a mismatched pair, an RSA or P-384 key, a non-CA or a not self-signed certificate are refused", async () => {
  const [a, b] = await Promise.all([oldRootPromise, newRootPromise]);
  const loaded = importRootCA(a.certPem, a.keyPem!);
  assert.equal(loaded.fingerprint, a.fingerprint);
  assert.ok(loaded.canSign);

  throwsCode(() => importRootCA(a.certPem, b.keyPem!), "CA_KEY_MISMATCH");
  const rsa = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const rsaPair = await keyPair(rsa);
  const rsaCa = await selfSigned(rsaPair.keys, rsa, true);
  throwsCode(() => importRootCA(rsaCa, rsaPair.keyPem), "CA_KEY_UNSUPPORTED");
  const ec = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const ecPair = await keyPair(ec);
  const ecLeaf = await selfSigned(ecPair.keys, ec, false);
  throwsCode(() => importRootCA(ecLeaf, ecPair.keyPem), "CA_CERT_NOT_CA");
  const p384 = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" };
  const p384Pair = await keyPair(p384);
  const p384Ca = await selfSigned(p384Pair.keys, p384, true);
  throwsCode(() => importRootCA(p384Ca, p384Pair.keyPem), "CA_KEY_UNSUPPORTED");
  // The cross-signed certificate is a CA certificate with b's key, issued by a: an intermediate, not a root.
  const crossPem = await crossSignRoot(a, b, { clock });
  const notSelfSigned = throwsCode(() => importRootCA(crossPem, b.keyPem!), "CA_CERT_NOT_CA");
  assert.match(notSelfSigned.message, /self-signed/);
  throwsCode(() => importRootCA("not a pem", a.keyPem!), "PEM_INVALID");
});

test("forNewRoot: fresh tokens pinning the new root for both roles; the replaced ones are refused as rotated, also after a round trip through the store", async () => {
  const [oldRoot, newRoot] = await Promise.all([oldRootPromise, newRootPromise]);
  const before = JoinTokenSet.generate(oldRoot);
  const oldWorker = before.token("swarm-worker");
  const oldManager = before.token("swarm-manager");
  const after = before.forNewRoot(newRoot);
  for (const role of ["swarm-worker", "swarm-manager"] as const) {
    const token = after.token(role);
    assert.equal(parseJoinToken(token).caDigest, newRoot.digest(), `${role}: pins the new root`);
    assert.notEqual(parseJoinToken(token).secret, parseJoinToken(before.token(role)).secret, `${role}: a new secret`);
    assert.equal(after.match(token, clock), role);
    assert.equal(after.expiresAt(role), undefined);
  }
  throwsCode(() => after.match(oldWorker, clock), "TOKEN_ROTATED");
  throwsCode(() => after.match(oldManager, clock), "TOKEN_ROTATED");
  // The old root's digest with an unknown secret is not "rotated": it never was a token of this cluster.
  throwsCode(() => after.match(generateJoinToken(oldRoot), clock), "TOKEN_DIGEST_MISMATCH");
  const otherCluster = generateJoinToken(await createRootCA({ clock }));
  throwsCode(() => after.match(otherCluster, clock), "TOKEN_DIGEST_MISMATCH");
  throwsCode(() => after.match(generateJoinToken(newRoot), clock), "TOKEN_INVALID");

  const restored = JoinTokenSet.fromProto(after.toProto(), newRoot);
  assert.equal(restored.token("swarm-worker"), after.token("swarm-worker"));
  throwsCode(() => restored.match(oldWorker, clock), "TOKEN_ROTATED");
  throwsCode(() => restored.match(oldManager, clock), "TOKEN_ROTATED");
  // The set must be restored with the new root: its tokens no longer pin the old one.
  throwsCode(() => JoinTokenSet.fromProto(after.toProto(), oldRoot), "TOKEN_DIGEST_MISMATCH");
});
