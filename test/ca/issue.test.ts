// Root CA creation and loading, and node certificate issuance checked by openssl.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, webcrypto, X509Certificate } from "node:crypto";
import { ManualClock } from "../../src/base/clock.js";
import { bytesToBase36, newId } from "../../src/base/ids.js";
import {
  createNodeKeyAndCsr,
  createRootCA,
  loadRootCA,
  RootCA,
  verifyNodeCertificate,
  DEFAULT_NODE_CERT_VALIDITY_MS,
} from "../../src/ca/index.js";
import { x509 } from "../../src/ca/x509-provider.js";
import { issue, openssl, opensslOk, sharedCsrPem, tempDir, throwsCode, writeFiles } from "./fixtures.js";

const HOUR_MS = 3600_000;
const clock = new ManualClock(Date.now());
const rootPromise = createRootCA({ clock });

test("root CA: P-256 CA certificate with CN=shoal-root-ca, keyCertSign+cRLSign, SKI, 20 years", async (t) => {
  const root = await rootPromise;
  const dir = tempDir(t);
  writeFiles(dir, { "root.crt": root.certPem, "root.key": root.keyPem! });
  const text = opensslOk(["x509", "-in", "root.crt", "-noout", "-subject", "-dates", "-ext", "basicConstraints,keyUsage,subjectKeyIdentifier"], dir);
  assert.match(text, /subject=CN = shoal-root-ca/);
  assert.match(text, /Basic Constraints: critical\s+CA:TRUE/);
  assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  assert.match(text, /Subject Key Identifier:\s+[0-9A-F:]{59}/);
  const notAfter = Date.parse(/notAfter=(.*)/.exec(text)![1]!);
  const years = (notAfter - clock.nowMs()) / (365.25 * 24 * HOUR_MS);
  assert.ok(years > 19.9 && years < 20.1, `validity ${years} years`);
  // The key is PKCS#8 that openssl reads as EC P-256.
  assert.match(root.keyPem!, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.match(opensslOk(["pkey", "-in", "root.key", "-noout", "-text"], dir), /NIST CURVE: P-256/);
});

test("root CA digest is SHA-256 of the PEM as 50 base-36 characters, stable across load", async () => {
  const root = await rootPromise;
  const expected = bytesToBase36(createHash("sha256").update(root.certPem).digest(), 50);
  assert.equal(root.digest(), expected);
  assert.match(root.digest(), /^[0-9a-z]{50}$/);
  const loaded = loadRootCA(root.certPem, root.keyPem!);
  assert.equal(loaded.digest(), root.digest());
  assert.equal(RootCA.fromCertOnly(root.certPem).digest(), root.digest());
});

test("loadRootCA refuses a key of another CA, a non-CA certificate and garbage", async () => {
  const root = await rootPromise;
  const other = await createRootCA({ clock });
  throwsCode(() => loadRootCA(root.certPem, other.keyPem!), "INVALID_ARGUMENT");
  const node = await issue(root, clock);
  throwsCode(() => loadRootCA(node.certPem, root.keyPem!), "CERT_INVALID");
  throwsCode(() => loadRootCA("not a certificate", root.keyPem!), "PEM_INVALID");
  throwsCode(() => loadRootCA(root.certPem, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "PEM_INVALID");
  throwsCode(() => RootCA.fromCertOnly("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"), "PEM_INVALID");
  // A verify-only root cannot sign.
  const verifyOnly = RootCA.fromCertOnly(root.certPem);
  assert.equal(verifyOnly.canSign, false);
  assert.equal(verifyOnly.keyPem, undefined);
  throwsCode(() => verifyOnly.issueNodeCertificate({ csrPem: "x", nodeId: newId(), clusterId: newId(), role: "swarm-worker", clock }), "FAILED_PRECONDITION");
});

test("issued certificate fields as openssl reads them; openssl verify accepts it against the root only", async (t) => {
  const root = await rootPromise;
  const other = await createRootCA({ clock });
  const dir = tempDir(t);
  const node = await issue(root, clock, { role: "swarm-manager", zone: "eu-west.1" });
  const foreign = await issue(other, clock);
  writeFiles(dir, { "root.crt": root.certPem, "node.crt": node.certPem, "foreign.crt": foreign.certPem });

  const text = opensslOk(["x509", "-in", "node.crt", "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage,keyUsage,basicConstraints", "-dates", "-serial"], dir);
  assert.match(text, new RegExp(`subject=O = ${node.clusterId}, OU = swarm-manager, CN = ${node.nodeId}\n`));
  assert.ok(
    text.includes(`DNS:swarm-manager, DNS:${node.nodeId}, URI:spiffe://${node.clusterId}/zone/eu-west.1/swarm-manager/${node.nodeId}`),
    text,
  );
  assert.match(text, /Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
  assert.match(text, /CA:FALSE/);
  assert.match(text, new RegExp(`serial=${node.serial}\n`));
  const notBefore = Date.parse(/notBefore=(.*)/.exec(text)![1]!);
  const notAfter = Date.parse(/notAfter=(.*)/.exec(text)![1]!);
  assert.ok(Math.abs(notBefore - (clock.nowMs() - HOUR_MS)) < 2000, "NotBefore is now - 1 h");
  assert.ok(Math.abs(notAfter - (clock.nowMs() + DEFAULT_NODE_CERT_VALIDITY_MS)) < 2000, "default validity is 90 days");
  assert.equal(node.notBefore.getTime(), notBefore);
  assert.equal(node.notAfter.getTime(), notAfter);

  assert.equal(opensslOk(["verify", "-CAfile", "root.crt", "node.crt"], dir).trim(), "node.crt: OK");
  const refused = openssl(["verify", "-CAfile", "root.crt", "foreign.crt"], dir);
  assert.notEqual(refused.status, 0);
  assert.doesNotMatch(refused.output, /foreign.crt: OK/);
  assert.match(refused.output, /error/);
});

test("zone defaults to 'default'; serials are 16 random bytes and positive; validity is honoured", async () => {
  const root = await rootPromise;
  const node = await issue(root, clock, { validityMs: 2 * HOUR_MS });
  const cert = new X509Certificate(node.certPem);
  assert.match(cert.subjectAltName!, new RegExp(`/zone/default/swarm-worker/${node.nodeId}$`));
  assert.equal(node.notAfter.getTime() - node.notBefore.getTime(), 3 * HOUR_MS);
  const serials = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const { serial, certPem } = await issue(root, clock);
    assert.match(serial, /^([0-9A-F]{2})+$/);
    // 16 random bytes with the top bit cleared: a positive integer below 2^127.
    assert.ok(BigInt("0x" + serial) < 2n ** 127n, "top bit of the 16 bytes cleared");
    assert.equal(serial, new X509Certificate(certPem).serialNumber, "the form Node's TLS layer reports");
    serials.add(serial);
  }
  assert.equal(serials.size, 300);
});

test("validity under 1 hour and bad identity arguments are refused with INVALID_ARGUMENT", async () => {
  const root = await rootPromise;
  const csrPem = await sharedCsrPem();
  const base = { csrPem, nodeId: newId(), clusterId: newId(), role: "swarm-worker" as const, clock };
  throwsCode(() => root.issueNodeCertificate({ ...base, validityMs: HOUR_MS - 1 }), "INVALID_ARGUMENT");
  throwsCode(() => root.issueNodeCertificate({ ...base, validityMs: 0 }), "INVALID_ARGUMENT");
  throwsCode(() => root.issueNodeCertificate({ ...base, validityMs: Number.NaN }), "INVALID_ARGUMENT");
  assert.ok(root.issueNodeCertificate({ ...base, validityMs: HOUR_MS }).certPem);
  throwsCode(() => root.issueNodeCertificate({ ...base, nodeId: "short" }), "INVALID_ARGUMENT");
  throwsCode(() => root.issueNodeCertificate({ ...base, clusterId: "A".repeat(25) }), "INVALID_ARGUMENT");
  throwsCode(() => root.issueNodeCertificate({ ...base, role: "swarm-admin" as never }), "INVALID_ARGUMENT");
  throwsCode(() => root.issueNodeCertificate({ ...base, zone: "a/../b" }), "INVALID_ARGUMENT");
});

test("a CSR asking for another CN/OU/O and SANs gets the CA's choice", async (t) => {
  const root = await rootPromise;
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const greedy = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=evilnode, OU=swarm-manager, O=othercluster",
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "swarm-manager" },
        { type: "url", value: "spiffe://othercluster/zone/secure/swarm-manager/evilnode" },
      ]),
      new x509.BasicConstraintsExtension(true, undefined, true),
    ],
  });
  const nodeId = newId();
  const clusterId = newId();
  const issued = root.issueNodeCertificate({ csrPem: greedy.toString("pem"), nodeId, clusterId, role: "swarm-worker", clock });
  const dir = tempDir(t);
  writeFiles(dir, { "node.crt": issued.certPem });
  const text = opensslOk(["x509", "-in", "node.crt", "-noout", "-subject", "-ext", "subjectAltName,basicConstraints"], dir);
  assert.match(text, new RegExp(`subject=O = ${clusterId}, OU = swarm-worker, CN = ${nodeId}\n`));
  assert.doesNotMatch(text, /evilnode|othercluster|swarm-manager|CA:TRUE/);
  assert.match(text, /CA:FALSE/);
  const info = verifyNodeCertificate(issued.certPem, { rootCA: root, clock });
  assert.deepEqual([info.nodeId, info.clusterId, info.role, info.zone], [nodeId, clusterId, "swarm-worker", "default"]);
  // The certificate carries the CSR's public key, so the CSR's key holder is the one who can use it.
  const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keys.publicKey));
  assert.ok(new X509Certificate(issued.certPem).publicKey.export({ type: "spki", format: "der" }).equals(spki));
});

test("CSRs with a bad signature, an RSA key, a P-384 key, or garbage are CSR_INVALID", async () => {
  const root = await rootPromise;
  const args = { nodeId: newId(), clusterId: newId(), role: "swarm-worker" as const, clock };
  const { csrPem, privateKey } = await createNodeKeyAndCsr();
  assert.equal(privateKey.asymmetricKeyDetails?.namedCurve, "prime256v1");

  // Change one byte of the signed part (the placeholder CN) so the signature no longer matches.
  const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\n/g, ""), "base64");
  const at = der.indexOf(Buffer.from("shoal-node"));
  assert.ok(at > 0);
  der[at] = "S".charCodeAt(0);
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
  throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: tampered }), "CSR_INVALID");
  throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: der }), "CSR_INVALID");
  // A public key point moved off the curve.
  const offCurve = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\n/g, ""), "base64");
  const point = offCurve.indexOf(Buffer.from("03420004", "hex")) + 4;
  assert.ok(point > 4);
  offCurve[point + 64] = offCurve[point + 64]! ^ 0x01;
  const err0 = throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: offCurve }), "CSR_INVALID");
  assert.match(err0.message, /public key/);

  const rsaAlg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const rsaKeys = (await webcrypto.subtle.generateKey(rsaAlg, true, ["sign", "verify"])) as CryptoKeyPair;
  const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=x", keys: rsaKeys, signingAlgorithm: rsaAlg });
  throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: rsaCsr.toString("pem") }), "CSR_INVALID");

  const p384Keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const p384Csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=x", keys: p384Keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } });
  const err = throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: p384Csr.toString("pem") }), "CSR_INVALID");
  assert.match(err.message, /P-256/);

  for (const garbage of ["", "hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", root.certPem]) {
    throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: garbage }), "CSR_INVALID");
  }
  throwsCode(() => root.issueNodeCertificate({ ...args, csrPem: new Uint8Array([0x30, 0x82, 0xff, 0xff, 1, 2]) }), "CSR_INVALID");
  // The untampered CSR still works, so the refusals above are about the CSRs, not the arguments.
  assert.ok(root.issueNodeCertificate({ ...args, csrPem }).certPem);
});
