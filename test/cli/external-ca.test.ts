// `shoal ca --external-ca protocol=cfssl,url=...[,cacert=FILE]` and `--no-external-ca` against a fake
// daemon: what the CLI sends (a compare-and-set UpdateCluster that changes only the external CA),
// what `shoal ca` shows, and the usage errors that reach no daemon.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UpdateClusterRequest_Autolock } from "../../src/proto/shoal/v1/control.js";
import { FakeDaemon, runShoal } from "./fake-daemon.js";

let fake: FakeDaemon;
let sock: string[];
let dir: string;
const CACERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

before(async () => {
  fake = await FakeDaemon.start();
  sock = ["--socket", fake.socketPath];
  dir = mkdtempSync(join(tmpdir(), "shoal-cli-extca-"));
  writeFileSync(join(dir, "signer-ca.pem"), CACERT);
});
after(async () => {
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});

const rootCa = (externalCa?: object) => ({
  root: { subject: "CN=shoal-root-ca", fingerprint: "ab".repeat(32), notAfter: new Date("2046-01-01T00:00:00Z") },
  rotation: undefined,
  nodeCertExpirySeconds: 0n,
  externalCa,
});

test("ca --external-ca sets the signer with a compare-and-set UpdateCluster; --no-external-ca clears it", async () => {
  const extCa = { protocol: "cfssl", url: "https://127.0.0.1:8888", caCertPem: Buffer.from(CACERT) };
  fake.reset({ getCluster: () => ({ cluster: { id: "c".repeat(25), meta: { version: 7n } } }), updateCluster: () => ({}), getRootCa: () => rootCa(extCa) });
  const r = await runShoal([...sock, "ca", "--external-ca", `protocol=cfssl,url=https://127.0.0.1:8888,cacert=${join(dir, "signer-ca.pem")}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fake.callsTo("updateCluster"), [
    { clusterVersion: 7n, nodeCertExpirySeconds: 0n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED, updateExternalCa: true, externalCa: extCa },
  ]);
  assert.match(r.stdout, /^Signer: +external CA, cfssl https:\/\/127\.0\.0\.1:8888 \(TLS verified with the given cacert\)$/m);

  fake.reset({ getCluster: () => ({ cluster: { id: "c".repeat(25), meta: { version: 8n } } }), updateCluster: () => ({}), getRootCa: () => rootCa() });
  const off = await runShoal([...sock, "ca", "--no-external-ca", "--format", "json"]);
  assert.equal(off.code, 0, off.stderr);
  assert.deepEqual(fake.callsTo("updateCluster"), [
    { clusterVersion: 8n, nodeCertExpirySeconds: 0n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED, updateExternalCa: true, externalCa: undefined },
  ]);
  assert.equal(JSON.parse(off.stdout).externalCa, null);
});

test("ca --external-ca usage errors exit 2 without changing the cluster", async () => {
  fake.reset({ getCluster: () => ({ cluster: { meta: { version: 1n } } }), updateCluster: () => ({}), getRootCa: () => rootCa() });
  for (const spec of ["protocol=cfssl", "url=https://x:1,token=abc", "url=https://x:1,url=https://y:1", "https://x:1", `url=https://x:1,cacert=${join(dir, "missing.pem")}`]) {
    const r = await runShoal([...sock, "ca", "--external-ca", spec]);
    assert.equal(r.code, 2, `${spec}: ${r.stderr}`);
    assert.match(r.stderr, /external-ca|cacert/);
  }
  assert.deepEqual(fake.callsTo("updateCluster"), []);
});

test("init --external-ca SPEC --ca-cert ROOT.pem sends the signer and the root certificate; either alone exits 2 with no call", async () => {
  const root = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
  writeFileSync(join(dir, "root.pem"), root);
  fake.reset({ init: () => ({ nodeId: "n".repeat(25), clusterId: "c".repeat(25), workerToken: "SWMTKN-1-x-y", managerToken: "SWMTKN-1-x-z", unlockKey: "" }) });
  const r = await runShoal([...sock, "init", "--external-ca", `protocol=cfssl,url=https://127.0.0.1:8888,cacert=${join(dir, "signer-ca.pem")}`, "--ca-cert", join(dir, "root.pem")]);
  assert.equal(r.code, 0, r.stderr);
  const [req] = fake.callsTo("init");
  assert.deepEqual(req.externalCa, { protocol: "cfssl", url: "https://127.0.0.1:8888", caCertPem: Buffer.from(CACERT) });
  assert.deepEqual(Buffer.from(req.caCertPem), Buffer.from(root));

  fake.reset();
  for (const args of [["--external-ca", "protocol=cfssl,url=https://127.0.0.1:8888"], ["--ca-cert", join(dir, "root.pem")], ["--external-ca", "url=https://x:1", "--ca-cert", join(dir, "missing.pem")]]) {
    const bad = await runShoal([...sock, "init", ...args]);
    assert.equal(bad.code, 2, `${args.join(" ")}: ${bad.stderr}`);
    assert.match(bad.stderr, /--ca-cert|--external-ca/);
  }
  assert.deepEqual(fake.calls, []);

  const help = await runShoal(["init", "--help"]);
  assert.match(help.stdout, /--external-ca <spec>/);
  assert.match(help.stdout, /--ca-cert <file>/);
  assert.match(help.stdout, /never its key/);
});

test("ca shows whether the managers hold the root CA key", async () => {
  for (const [held, pattern] of [[true, /^Root CA key: +held by the managers/m], [false, /^Root CA key: +none on the managers/m]] as const) {
    fake.reset({ getRootCa: () => ({ ...rootCa({ protocol: "cfssl", url: "https://127.0.0.1:8888", caCertPem: Buffer.alloc(0) }), rootKeyHeld: held }) });
    const r = await runShoal([...sock, "ca"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, pattern);
    const json = await runShoal([...sock, "ca", "--format", "json"]);
    assert.equal(JSON.parse(json.stdout).rootKeyHeld, held);
  }
});
