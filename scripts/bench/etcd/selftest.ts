// Sanity run of the etcd baseline's parts (not part of the test suite: CI machines may lack etcd):
// starts the 3-member TLS cluster, writes and reads back a key through EtcdKvClient, and checks that
// clients without a certificate or with one from another CA are refused. Prints OK or exits 1.
// Run: node --import tsx scripts/bench/etcd/selftest.ts
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ETCD_INSTALL_HINT, findEtcdBinary, startEtcdCluster } from "./cluster.js";
import { EtcdKvClient } from "./kv-client.js";

/** A CA and client certificate the cluster has never seen, to prove the CA is actually checked. */
function foreignClientIdentity(): { caPem: string; certPem: string; keyPem: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-etcd-foreign-"));
  try {
    const run = (args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    run(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=foreign-ca"]);
    run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "c.key", "-out", "c.csr", "-subj", "/CN=intruder"]);
    run(["x509", "-req", "-in", "c.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "0x01", "-days", "1", "-out", "c.crt"]);
    return { caPem: fs.readFileSync(path.join(dir, "ca.crt"), "utf8"), certPem: fs.readFileSync(path.join(dir, "c.crt"), "utf8"), keyPem: fs.readFileSync(path.join(dir, "c.key"), "utf8") };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function expectRefused(client: EtcdKvClient, what: string): Promise<string> {
  try {
    await client.put("selftest/intruder", "x");
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    assert.match(message, /UNAVAILABLE|certificate|handshake|alert/i, `${what}: refused, but for an unexpected reason: ${message}`);
    return message;
  } finally {
    client.close();
  }
  throw new Error(`${what}: a put was accepted`);
}

async function main(): Promise<void> {
  if (findEtcdBinary() === undefined) {
    console.log(JSON.stringify({ skipped: ETCD_INSTALL_HINT }));
    return;
  }
  const cluster = await startEtcdCluster({ members: 3, tls: true });
  const dir = cluster.dir;
  try {
    assert.equal(cluster.endpoints.length, 3);
    for (const e of cluster.endpoints) assert.match(e, /^https:\/\/127\.0\.0\.1:\d+$/);
    const client = new EtcdKvClient({
      endpoints: cluster.endpoints,
      channels: 3,
      tls: { caPem: cluster.caPem, certPem: cluster.clientCertPem, keyPem: cluster.clientKeyPem },
    });
    try {
      const key = `selftest/${randomBytes(4).toString("hex")}`;
      const value = randomBytes(256);
      // Write through one member and read through each of the others: the value was replicated.
      const put = await client.put(key, value, 0);
      assert.ok(put.revision > 1n, `put revision ${put.revision} should be past the initial revision`);
      for (const worker of [1, 2]) {
        const got = await client.range(key, worker);
        assert.equal(got.kvs.length, 1, `member ${worker} should return exactly the key`);
        assert.equal(Buffer.from(got.kvs[0]!.key).toString(), key);
        assert.ok(Buffer.from(got.kvs[0]!.value).equals(value), "value read back differs from the value written");
        assert.equal(got.kvs[0]!.modRevision, put.revision);
      }
      const missing = await client.range(`${key}/absent`);
      assert.equal(missing.kvs.length, 0);
    } finally {
      client.close();
    }

    const noCert = await expectRefused(
      new EtcdKvClient({ endpoints: cluster.endpoints, channels: 1, tls: { caPem: cluster.caPem }, callTimeoutMs: 5000 }),
      "client without a certificate",
    );
    const foreign = foreignClientIdentity();
    const foreignCa = await expectRefused(
      new EtcdKvClient({ endpoints: cluster.endpoints, channels: 1, tls: { caPem: cluster.caPem, certPem: foreign.certPem, keyPem: foreign.keyPem }, callTimeoutMs: 5000 }),
      "client with another CA's certificate",
    );
    console.log(JSON.stringify({ ok: true, endpoints: cluster.endpoints, refusedWithoutCert: noCert.slice(0, 160), refusedForeignCa: foreignCa.slice(0, 160) }));
  } finally {
    await cluster.stop();
  }
  assert.equal(fs.existsSync(dir), false, "stop() should remove the cluster directory");
  console.log("OK");
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
