// Root CA rotation (issue 11) against real daemons with mutual TLS on 127.0.0.1: every node ends
// with a certificate under the new root (checked with openssl), writes keep succeeding during the
// rotation, the old join tokens are refused as rotated; a down worker holds the rotation until it
// is removed; an imported root that is not a usable P-256 CA is refused and nothing changes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webcrypto, X509Certificate, KeyObject } from "node:crypto";
import { ManualClock } from "../../src/base/clock.js";
import { createRootCA, splitPemBundle } from "../../src/ca/index.js";
import { x509 } from "../../src/ca/x509-provider.js";
import { ProcessCluster, expectCode, freePort, sleep, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";
import type { RootCaView } from "../../src/cli/commands/root-ca.js";

const scratch = mkdtempSync(join(tmpdir(), "shoal-rotation-"));

function writeScratch(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

/** True when `openssl verify -CAfile root [-untrusted intermediate]` accepts the leaf of node.crt. */
function opensslVerifies(rootPath: string, nodeCertPem: string, name: string, untrustedPem?: string): boolean {
  const leafPath = writeScratch(`${name}-leaf.pem`, splitPemBundle(nodeCertPem)[0]!);
  const untrusted = untrustedPem === undefined ? [] : ["-untrusted", writeScratch(`${name}-untrusted.pem`, untrustedPem)];
  try {
    execFileSync("openssl", ["verify", "-CAfile", rootPath, ...untrusted, leafPath], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

async function caView(node: NodeProcess): Promise<RootCaView> {
  const res = await node.cli(["ca", "--format", "json"]);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as RootCaView;
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
}

test("rotating the root CA of 3 managers + 2 workers: every node ends under the new root, writes go on, old tokens are refused as rotated", { timeout: 180_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, m2, m3, w1, w2] = await Promise.all(["m1", "m2", "m3", "w1", "w2"].map((n) => cluster.add(n)));
  const { workerToken } = await cluster.init("m1");
  const managerToken = (await m1!.cli(["join-token", "manager", "-q"])).stdout.trim();
  await cluster.join("m2", managerToken, m1!.addr);
  await cluster.join("m3", managerToken, m1!.addr);
  await cluster.join("w1", workerToken, m1!.addr);
  await cluster.join("w2", workerToken, m1!.addr);
  await cluster.waitReady(m1!, 5);
  await waitForVoters(m1!, 3, { timeoutMs: 20_000 });
  const nodes = [m1!, m2!, m3!, w1!, w2!];
  const oldRootPem = m1!.file("certificates/root-ca.crt");
  const oldRootPath = writeScratch("old-root.pem", oldRootPem);
  const before = await caView(m1!);
  assert.equal(before.rotation, undefined);
  assert.equal(before.root.fingerprint, fingerprintOf(oldRootPem));

  // Control-API writes through a follower's socket (forwarded to the leader over mTLS) all along.
  let writing = true;
  let writes = 0;
  const failures: string[] = [];
  const writer = (async () => {
    const client = m2!.newControlClient();
    try {
      for (let i = 0; writing; i++) {
        try {
          await m2!.putValue(`rotation-${i % 20}`, Buffer.from(String(i)), 5000, client);
          writes++;
        } catch (err) {
          failures.push(err instanceof Error ? err.message : String(err));
        }
        await sleep(20);
      }
    } finally {
      client.close();
    }
  })();

  const rotated = await m1!.cli(["ca", "--rotate", "--format", "json"]);
  assert.equal(rotated.code, 0, rotated.stderr);
  const after = JSON.parse(rotated.stdout) as RootCaView;
  assert.equal(after.rotation, undefined, "--rotate returns once the rotation is over");
  assert.notEqual(after.root.fingerprint, before.root.fingerprint, "the cluster has a new root");
  writing = false;
  await writer;
  assert.ok(writes > 10, `writes went on during the rotation (${writes})`);
  assert.deepEqual(failures, [], "no control-API write failed during the rotation");

  // Every node learns that the new root alone is trusted, and holds a certificate under it.
  for (const node of nodes) {
    await waitFor(`${node.name} to write the new root alone`, () => {
      const roots = splitPemBundle(node.file("certificates/root-ca.crt"));
      return roots.length === 1 && fingerprintOf(roots[0]!) === after.root.fingerprint;
    }, 20_000);
  }
  const newRootPath = writeScratch("new-root.pem", m1!.file("certificates/root-ca.crt"));
  for (const node of nodes) {
    const certPem = node.file("certificates/node.crt");
    assert.ok(opensslVerifies(newRootPath, certPem, node.name), `${node.name}'s certificate verifies under the new root`);
    assert.ok(!opensslVerifies(oldRootPath, certPem, node.name), `${node.name}'s certificate no longer verifies under the old root alone`);
    // Issued during the rotation, it carries the new root cross-signed by the old one: a node that
    // still trusted only the old root accepted it.
    assert.equal(splitPemBundle(certPem).length, 2, `${node.name} presents leaf + cross-signed root`);
    assert.ok(opensslVerifies(oldRootPath, certPem, node.name, splitPemBundle(certPem)[1]), `${node.name}'s chain verifies under the old root through the cross-signed certificate`);
  }
  await cluster.waitReady(m1!, 5);

  // The old worker token pins the old root: refused as rotated; the new one joins.
  const w3 = await cluster.add("w3");
  const refused = await w3.cli(["join", "--token", workerToken, m1!.addr]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /rotated/i);
  const newWorkerToken = (await m1!.cli(["join-token", "worker", "-q"])).stdout.trim();
  assert.notEqual(newWorkerToken, workerToken);
  await cluster.join("w3", newWorkerToken, m1!.addr);
  assert.ok(opensslVerifies(newRootPath, w3.file("certificates/node.crt"), "w3"));
});

async function selfSignedCa(keys: CryptoKeyPair, algorithm: Algorithm | EcKeyGenParams | RsaHashedKeyGenParams, ca: boolean): Promise<string> {
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

function pkcs8Of(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString();
}

test("a down worker holds the rotation and is named; node rm --force lets it finish; bad imported roots are refused and nothing changes", { timeout: 180_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, w1, w2] = await Promise.all(["m1", "w1", "w2"].map((n) => cluster.add(n)));
  const { workerToken } = await cluster.init("m1");
  await cluster.join("w1", workerToken, m1!.addr);
  await cluster.join("w2", workerToken, m1!.addr);
  await cluster.waitReady(m1!, 3);
  const before = await caView(m1!);

  // Imports that must be refused, each with its stable code, before anything is written.
  const clock = new ManualClock(Date.now());
  const a = await createRootCA({ clock });
  const b = await createRootCA({ clock });
  const ec = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const ecKeys = (await webcrypto.subtle.generateKey(ec, true, ["sign", "verify"])) as CryptoKeyPair;
  const rsa = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const rsaKeys = (await webcrypto.subtle.generateKey(rsa, true, ["sign", "verify"])) as CryptoKeyPair;
  const cases: [string, string, string, string][] = [
    ["a mismatched pair", a.certPem, b.keyPem!, "CA_KEY_MISMATCH"],
    ["an RSA key", await selfSignedCa(rsaKeys, rsa, true), pkcs8Of(rsaKeys.privateKey), "CA_KEY_UNSUPPORTED"],
    ["a certificate that is not a CA", await selfSignedCa(ecKeys, ec, false), pkcs8Of(ecKeys.privateKey), "CA_CERT_NOT_CA"],
  ];
  for (const [what, certPem, keyPem, code] of cases) {
    const certPath = writeScratch(`${code}.crt`, certPem);
    const keyPath = writeScratch(`${code}.key`, keyPem);
    const res = await m1!.cli(["ca", "--rotate", "--ca-cert", certPath, "--ca-key", keyPath]);
    assert.notEqual(res.code, 0, `${what} is refused`);
    assert.ok(res.stderr.length > 0, `${what}: says why`);
    await assert.rejects(m1!.client.rotateRootCa({ caCertPem: Buffer.from(certPem), caKeyPem: Buffer.from(keyPem) }), (err) => expectCode(err, code));
    assert.deepEqual(await caView(m1!), before, `${what}: nothing changed`);
  }

  // A down worker: the rotation waits for it and says so.
  const w2Id = (await w2!.info()).nodeId;
  await w2!.stop();
  await waitFor("w2 to be down", async () => (await m1!.client.listNodes()).some((n) => n.id === w2Id && n.status?.state === 1), 20_000);
  const started = await m1!.cli(["ca", "--rotate", "--detach", "--format", "json"]);
  assert.equal(started.code, 0, started.stderr);
  assert.ok((JSON.parse(started.stdout) as RootCaView).rotation !== undefined, "--detach returns while the rotation runs");
  const waiting = await waitFor("the rotation to wait only for w2", async () => {
    const view = await caView(m1!);
    return view.rotation !== undefined && view.rotation.nodesDone === 2 && view.rotation.nodesTotal === 3 ? view : undefined;
  }, 30_000);
  assert.deepEqual(waiting.rotation!.waitingFor.map((n) => [n.nodeId, n.down]), [[w2Id, true]]);
  const text = await m1!.cli(["ca"]);
  assert.match(text.stdout, new RegExp(`waiting for .*down`));
  await sleep(1500);
  assert.ok((await caView(m1!)).rotation !== undefined, "still waiting for the down worker");

  const removed = await m1!.cli(["node", "rm", "--force", w2Id]);
  assert.equal(removed.code, 0, removed.stderr);
  const done = await waitFor("the rotation to finish", async () => {
    const view = await caView(m1!);
    return view.rotation === undefined ? view : undefined;
  }, 30_000);
  assert.equal(done.root.fingerprint, waiting.rotation!.target.fingerprint);
  const newRootPath = writeScratch("down-new-root.pem", await waitFor("m1 to trust the new root alone", () => {
    const pem = m1!.file("certificates/root-ca.crt");
    return splitPemBundle(pem).length === 1 && fingerprintOf(pem) === done.root.fingerprint ? pem : undefined;
  }));
  for (const node of [m1!, w1!]) assert.ok(opensslVerifies(newRootPath, node.file("certificates/node.crt"), node.name), `${node.name} is under the new root`);
});
