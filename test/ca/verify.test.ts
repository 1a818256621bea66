// verifyNodeCertificate: chain, dates, cluster, role, revocation, malformed input, and the cache.
import { test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { ManualClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import {
  createRootCA,
  NodeCertificateVerifier,
  parseNodeCertificate,
  RevocationList,
  RootCA,
  verifyNodeCertificate,
} from "../../src/ca/index.js";
import { x509, ECDSA_P256_SHA256 } from "../../src/ca/x509-provider.js";
import { issue, throwsCode } from "./fixtures.js";

const HOUR_MS = 3600_000;
const START_MS = Date.UTC(2030, 0, 1);
const rootPromise = createRootCA({ clock: new ManualClock(START_MS - 24 * HOUR_MS) });
const otherRootPromise = createRootCA({ clock: new ManualClock(START_MS - 24 * HOUR_MS) });

test("a valid certificate yields its identity, from PEM and from DER", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const node = await issue(root, clock, { role: "swarm-manager", zone: "z1" });
  const info = verifyNodeCertificate(node.certPem, { rootCA: root, clusterId: node.clusterId, roles: ["swarm-manager"], clock });
  assert.deepEqual(info, {
    nodeId: node.nodeId,
    clusterId: node.clusterId,
    role: "swarm-manager",
    zone: "z1",
    serial: node.serial,
    notBefore: node.notBefore,
    notAfter: node.notAfter,
  });
  const der = new X509Certificate(node.certPem).raw;
  assert.deepEqual(verifyNodeCertificate(der, { rootCA: root, clock }), info);
  // A verify-only root (as on a worker) verifies the same.
  assert.equal(verifyNodeCertificate(der, { rootCA: RootCA.fromCertOnly(root.certPem), clock }).nodeId, node.nodeId);
  // Returned objects are copies: mutating one does not poison the cache.
  info.notAfter.setTime(0);
  (info as { role: string }).role = "swarm-worker";
  const again = verifyNodeCertificate(der, { rootCA: root, clock });
  assert.equal(again.role, "swarm-manager");
  assert.equal(again.notAfter.getTime(), node.notAfter.getTime());
});

test("dates: not yet valid before NotBefore, valid through NotAfter, expired after", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const node = await issue(root, clock, { validityMs: 2 * HOUR_MS });
  const at = (ms: number) => () => verifyNodeCertificate(node.certPem, { rootCA: root, clock: new ManualClock(ms) });
  throwsCode(at(node.notBefore.getTime() - 1), "CERT_NOT_YET_VALID");
  assert.equal(at(node.notBefore.getTime())().nodeId, node.nodeId);
  assert.equal(at(node.notAfter.getTime())().nodeId, node.nodeId);
  const moved = new ManualClock(START_MS);
  moved.set(node.notAfter.getTime() + 1);
  const err = throwsCode(() => verifyNodeCertificate(node.certPem, { rootCA: root, clock: moved }), "CERT_EXPIRED");
  assert.match(err.message, /rejoin/);
});

test("a certificate of another root is CERT_UNTRUSTED, even after it was cached as valid for its own root", async () => {
  const root = await rootPromise;
  const other = await otherRootPromise;
  const clock = new ManualClock(START_MS);
  const foreign = await issue(other, clock);
  const verifier = new NodeCertificateVerifier();
  assert.equal(verifier.verify(foreign.certPem, { rootCA: other, clock }).nodeId, foreign.nodeId);
  throwsCode(() => verifier.verify(foreign.certPem, { rootCA: root, clock }), "CERT_UNTRUSTED");
  throwsCode(() => verifyNodeCertificate(foreign.certPem, { rootCA: root, clock }), "CERT_UNTRUSTED");
  // Trust is checked before the dates, so an expired foreign certificate is still "untrusted".
  throwsCode(() => verifier.verify(foreign.certPem, { rootCA: root, clock: new ManualClock(START_MS + 1000 * 24 * HOUR_MS) }), "CERT_UNTRUSTED");
});

test("cluster and role checks", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const worker = await issue(root, clock, { role: "swarm-worker" });
  throwsCode(() => verifyNodeCertificate(worker.certPem, { rootCA: root, clusterId: newId(), clock }), "CERT_WRONG_CLUSTER");
  throwsCode(() => verifyNodeCertificate(worker.certPem, { rootCA: root, clusterId: worker.clusterId, roles: ["swarm-manager"], clock }), "CERT_WRONG_ROLE");
  throwsCode(() => verifyNodeCertificate(worker.certPem, { rootCA: root, roles: [], clock }), "CERT_WRONG_ROLE");
  const ok = verifyNodeCertificate(worker.certPem, { rootCA: root, clusterId: worker.clusterId, roles: ["swarm-manager", "swarm-worker"], clock });
  assert.equal(ok.role, "swarm-worker");
});

test("revoked by node ID and by serial, re-checked on every call even when cached", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const a = await issue(root, clock);
  const b = await issue(root, clock);
  const list = new RevocationList();
  assert.ok(verifyNodeCertificate(a.certPem, { rootCA: root, clock, revocation: list }));
  assert.ok(verifyNodeCertificate(b.certPem, { rootCA: root, clock, revocation: list }));
  list.revoke(a.nodeId, [], a.notAfter, new Date(clock.nowMs()));
  throwsCode(() => verifyNodeCertificate(a.certPem, { rootCA: root, clock, revocation: list }), "CERT_REVOKED");
  // Revoking b's serial under some other node ID still revokes b's certificate.
  list.revoke(newId(), [b.serial.toLowerCase()], b.notAfter, new Date(clock.nowMs()));
  throwsCode(() => verifyNodeCertificate(b.certPem, { rootCA: root, clock, revocation: list }), "CERT_REVOKED");
  const c = await issue(root, clock);
  assert.ok(verifyNodeCertificate(c.certPem, { rootCA: root, clock, revocation: list }));
});

test("garbage is PEM_INVALID or CERT_INVALID; a CA certificate is not a node certificate", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const opts = { rootCA: root, clock };
  throwsCode(() => verifyNodeCertificate("hello", opts), "PEM_INVALID");
  throwsCode(() => verifyNodeCertificate("", opts), "PEM_INVALID");
  throwsCode(() => verifyNodeCertificate("-----BEGIN CERTIFICATE-----\n$$$$\n-----END CERTIFICATE-----\n", opts), "PEM_INVALID");
  throwsCode(() => verifyNodeCertificate("-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n", opts), "CERT_INVALID");
  throwsCode(() => verifyNodeCertificate(new Uint8Array([1, 2, 3]), opts), "CERT_INVALID");
  throwsCode(() => verifyNodeCertificate(new Uint8Array(0), opts), "CERT_INVALID");
  throwsCode(() => verifyNodeCertificate(root.certPem, opts), "CERT_INVALID");
  // A truncated DER certificate.
  const node = await issue(root, clock);
  const der = new X509Certificate(node.certPem).raw;
  throwsCode(() => verifyNodeCertificate(der.subarray(0, der.length - 10), opts), "CERT_INVALID");
});

/** Signs an arbitrary leaf with the root key through @peculiar, to test layouts the CA never issues. */
async function craft(root: RootCA, subject: string, sans: { type: "dns" | "url"; value: string }[]): Promise<string> {
  const keys = (await globalThis.crypto.subtle.generateKey(ECDSA_P256_SHA256, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01",
    subject,
    issuer: "CN=shoal-root-ca",
    notBefore: new Date(START_MS - HOUR_MS),
    notAfter: new Date(START_MS + 24 * HOUR_MS),
    publicKey: keys.publicKey,
    signingKey: await root.signingCryptoKey(),
    signingAlgorithm: ECDSA_P256_SHA256,
    extensions: [
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.AuthorityKeyIdentifierExtension.create(new x509.X509Certificate(root.certPem)),
    ],
  });
  return cert.toString("pem");
}

test("certificates signed by our root but with a malformed identity are CERT_INVALID", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const nodeId = newId();
  const clusterId = newId();
  const subject = `O=${clusterId}, OU=swarm-worker, CN=${nodeId}`;
  const good = [
    { type: "dns" as const, value: "swarm-worker" },
    { type: "dns" as const, value: nodeId },
    { type: "url" as const, value: `spiffe://${clusterId}/zone/default/swarm-worker/${nodeId}` },
  ];
  // The crafted baseline is accepted, so each refusal below is caused by the one change it makes.
  assert.equal(verifyNodeCertificate(await craft(root, subject, good), { rootCA: root, clock }).nodeId, nodeId);
  const cases: [string, string, { type: "dns" | "url"; value: string }[]][] = [
    ["no SPIFFE URI", subject, good.slice(0, 2)],
    ["malformed SPIFFE URI", subject, [...good.slice(0, 2), { type: "url", value: `spiffe://${clusterId}/swarm-worker/${nodeId}` }]],
    ["URI for another node", subject, [...good.slice(0, 2), { type: "url", value: `spiffe://${clusterId}/zone/default/swarm-worker/${newId()}` }]],
    ["URI with another role", subject, [...good.slice(0, 2), { type: "url", value: `spiffe://${clusterId}/zone/default/swarm-manager/${nodeId}` }]],
    ["extra SAN", subject, [...good, { type: "dns", value: "example.com" }]],
    ["unknown role", `O=${clusterId}, OU=swarm-admin, CN=${nodeId}`, good],
    ["missing O", `OU=swarm-worker, CN=${nodeId}`, good],
    ["bad node ID", `O=${clusterId}, OU=swarm-worker, CN=Node1`, good],
    ["duplicate CN", `O=${clusterId}, OU=swarm-worker, CN=${nodeId}, CN=${newId()}`, good],
  ];
  for (const [name, crafted, sans] of cases) {
    const pem = await craft(root, crafted, sans);
    const err = throwsCode(() => verifyNodeCertificate(pem, { rootCA: root, clock }), "CERT_INVALID");
    assert.ok(err.message.length > 0, name);
    throwsCode(() => parseNodeCertificate(pem), "CERT_INVALID");
  }
});

test("parseNodeCertificate reads any well-formed node certificate without trust checks", async () => {
  const other = await otherRootPromise;
  const clock = new ManualClock(START_MS);
  const foreign = await issue(other, clock, { zone: "lab" });
  const info = parseNodeCertificate(foreign.certPem);
  assert.equal(info.nodeId, foreign.nodeId);
  assert.equal(info.zone, "lab");
  assert.equal(info.serial, foreign.serial);
});

test("the cache is a bounded LRU keyed by DER fingerprint", async () => {
  const root = await rootPromise;
  const clock = new ManualClock(START_MS);
  const verifier = new NodeCertificateVerifier({ maxEntries: 2 });
  const certs = [await issue(root, clock), await issue(root, clock), await issue(root, clock)];
  verifier.verify(certs[0]!.certPem, { rootCA: root, clock });
  verifier.verify(certs[1]!.certPem, { rootCA: root, clock });
  verifier.verify(certs[0]!.certPem, { rootCA: root, clock }); // 0 is now most recent
  verifier.verify(certs[2]!.certPem, { rootCA: root, clock }); // evicts 1
  assert.equal(verifier.size, 2);
  // The same certificate as PEM and DER is one entry.
  verifier.verify(new X509Certificate(certs[2]!.certPem).raw, { rootCA: root, clock });
  assert.equal(verifier.size, 2);
  throwsCode(() => new NodeCertificateVerifier({ maxEntries: 0 }), "INVALID_ARGUMENT");
});
