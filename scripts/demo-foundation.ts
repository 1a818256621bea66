// A narrated end-to-end run of Shoal's foundation layers, all real: a root CA, node keys and CSRs
// made "on the node", certificates issued and checked (also by openssl when present), join tokens,
// revocation with a CRL, and an autolocked encrypted store whose files never hold the plaintext.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { systemClock } from "../src/base/clock.js";
import { isShoalError } from "../src/base/errors.js";
import { newId } from "../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, JoinTokenSet, parseJoinToken, renderCrl, RevocationList, verifyNodeCertificate } from "../src/ca/index.js";
import { DataKey, generateUnlockKey, kekFromUnlockKey } from "../src/crypto/index.js";
import { dataDirPaths, EncryptedStore, readDekFile, readNodeKey, writeDekFile, writeNodeKey } from "../src/storage/index.js";

const step = (text: string): void => console.log(`\n== ${text}`);
const show = (label: string, value: unknown): void => console.log(`   ${label.padEnd(22)} ${String(value)}`);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "shoal-demo-"));
  try {
    step("create the cluster's root CA (ECDSA P-256, 20 years)");
    const clusterId = newId();
    const rootCA = await createRootCA({ clock: systemClock });
    show("cluster ID", clusterId);
    show("root CA subject", rootCA.certificate.subject);
    show("root CA digest", rootCA.digest());

    step("join tokens pin the root CA");
    const tokens = JoinTokenSet.generate(rootCA);
    const workerToken = tokens.token("swarm-worker");
    const parsed = parseJoinToken(workerToken);
    show("token digest = CA", parsed.caDigest === rootCA.digest());
    show("worker token matches", tokens.match(workerToken, systemClock));
    tokens.rotate("swarm-worker");
    try {
      tokens.match(workerToken, systemClock);
    } catch (err) {
      show("after rotation", isShoalError(err) ? `${err.code}: ${err.message}` : err);
    }

    step("nodes make their own keys and CSRs; the CA decides role, ID, cluster and zone");
    const manager = await createNodeKeyAndCsr();
    const worker = await createNodeKeyAndCsr();
    const managerId = newId();
    const workerId = newId();
    const managerCert = rootCA.issueNodeCertificate({ csrPem: manager.csrPem, nodeId: managerId, role: "swarm-manager", clusterId, clock: systemClock });
    const workerCert = rootCA.issueNodeCertificate({ csrPem: worker.csrPem, nodeId: workerId, role: "swarm-worker", clusterId, zone: "pci", clock: systemClock });
    for (const [name, cert] of [["manager", managerCert], ["worker", workerCert]] as const) {
      const x = new X509Certificate(cert.certPem);
      show(`${name} subject`, x.subject.replace(/\n/g, ", "));
      show(`${name} SANs`, x.subjectAltName);
      show(`${name} valid`, `${x.validFrom} → ${x.validTo}`);
      const id = verifyNodeCertificate(cert.certPem, { rootCA, clusterId, clock: systemClock });
      show(`${name} verified`, `${id.role} in zone ${id.zone}, serial ${id.serial}`);
    }

    step("remove and revoke the worker: its certificate is refused, and a CRL says so to OpenSSL");
    const revoked = new RevocationList();
    revoked.revoke(workerId, [workerCert.serial], workerCert.notAfter, new Date());
    try {
      verifyNodeCertificate(workerCert.certPem, { rootCA, clusterId, clock: systemClock, revocation: revoked });
    } catch (err) {
      show("worker certificate", isShoalError(err) ? `${err.code}: ${err.message}` : err);
    }
    const crlPem = await renderCrl(rootCA, revoked, { clock: systemClock });
    writeFileSync(join(work, "root.crt"), rootCA.certPem);
    writeFileSync(join(work, "crl.pem"), crlPem);
    writeFileSync(join(work, "worker.crt"), workerCert.certPem);
    try {
      execFileSync("openssl", ["verify", "-crl_check", "-CRLfile", join(work, "crl.pem"), "-CAfile", join(work, "root.crt"), join(work, "worker.crt")], { stdio: "pipe" });
      show("openssl verify", "unexpectedly OK");
    } catch (err) {
      const out = String((err as { stdout?: Buffer }).stdout ?? "") + String((err as { stderr?: Buffer }).stderr ?? "");
      show("openssl verify", /certificate revoked/.test(out) ? "certificate revoked" : out.trim() || "openssl not installed");
    }

    step("an autolocked manager's data dir: DEK wrapped by the unlock key, node key encrypted");
    const dataDir = join(work, "manager");
    const paths = dataDirPaths(dataDir);
    const unlockKey = generateUnlockKey();
    const kek = kekFromUnlockKey(unlockKey);
    const dek = DataKey.generate();
    await writeDekFile(paths.dekFile, { current: dek }, kek);
    await writeNodeKey(paths.nodeKeyFile, manager.privateKey, unlockKey);
    show("unlock key", "generated (printed once to the operator; never written to disk)");
    const marker = `demo-marker-${newId()}`;
    const store = await EncryptedStore.open(paths.stateDir, { current: dek });
    await store.put(Buffer.from("secret/db-password"), Buffer.from(marker), { sync: true });
    await store.close();
    const leaked = files(dataDir).filter((f) => readFileSync(f).includes(marker));
    show("marker in any file", leaked.length === 0 ? "no (every value is sealed)" : leaked.join(", "));

    step("restart: without the key the node stays locked; with it, the store opens");
    try {
      await readDekFile(paths.dekFile);
    } catch (err) {
      show("no key", isShoalError(err) ? err.code : err);
    }
    try {
      await readDekFile(paths.dekFile, kekFromUnlockKey(generateUnlockKey()));
    } catch (err) {
      show("wrong key", isShoalError(err) ? err.code : err);
    }
    const keys = await readDekFile(paths.dekFile, kek);
    await readNodeKey(paths.nodeKeyFile, unlockKey);
    const reopened = await EncryptedStore.open(paths.stateDir, keys);
    show("value read back", (await reopened.get(Buffer.from("secret/db-password")))?.toString() === marker ? "yes, intact" : "NO");
    await reopened.close();
    console.log("\ndemo finished: every step above ran for real");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(isShoalError(err) ? `error ${err.code}: ${err.message}` : err);
  process.exit(1);
});
