// A cluster formed by tokens from real daemon processes: 3 managers + 2 workers, join refusals that
// say which token problem it was, role changes through renewal, zone labels in the certificate,
// follower forwarding, encryption at rest, and no secret in any log line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { parseNodeCertificate } from "../../src/ca/index.js";
import { NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { ProcessCluster, filesUnder, waitFor, waitForVoters, expectCode } from "./cluster.js";

test("3 managers and 2 workers join by token; refusals say which; roles, zones and secrets behave", { timeout: 120_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, m2, m3, w1, w2] = await Promise.all(["m1", "m2", "m3", "w1", "w2"].map((n) => cluster.add(n)));
  const secrets: string[] = [];

  const init = await m1!.cli(["init"]);
  assert.equal(init.code, 0, init.stderr);
  const workerToken = (await m1!.cli(["join-token", "worker", "-q"])).stdout.trim();
  const managerToken = (await m1!.cli(["join-token", "manager", "-q"])).stdout.trim();
  assert.match(workerToken, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
  secrets.push(workerToken, managerToken);

  await cluster.join("m2", managerToken, m1!.addr);
  await cluster.join("m3", managerToken, m1!.addr);
  await cluster.join("w1", workerToken, m1!.addr);
  // A worker may join through a follower: it is told the leader's address.
  await cluster.join("w2", workerToken, m2!.addr);
  await cluster.waitReady(m1!, 5);

  const ls = await m2!.cli(["node", "ls", "--format", "json"]);
  assert.equal(ls.code, 0, ls.stderr);
  const nodes = JSON.parse(ls.stdout) as unknown[];
  assert.equal(nodes.length, 5);
  const info = await m3!.info();
  assert.equal(info.role, NodeRole.NODE_ROLE_MANAGER);
  assert.equal(info.managers.length, 3);
  await waitForVoters(m1!, 3, { what: "3 raft voters" });
  const wInfo = await w1!.info();
  assert.equal(wInfo.role, NodeRole.NODE_ROLE_WORKER);
  const wCert = parseNodeCertificate(w1!.file("certificates/node.crt"));
  assert.equal(wCert.role, "swarm-worker");
  assert.equal(wCert.clusterId, info.clusterId);

  // Joining twice fails.
  const again = await w1!.cli(["join", "--token", workerToken, m1!.addr]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already part of a cluster/);

  // On a worker, manager commands fail with a hint.
  const onWorker = await w1!.cli(["node", "ls"]);
  assert.notEqual(onWorker.code, 0);
  assert.match(onWorker.stderr, /not a manager/);

  // Token refusals, each with its reason.
  const spare = await cluster.add("spare");
  const malformed = await spare.cli(["join", "--token", "SWMTKN-1-short", m1!.addr]);
  assert.notEqual(malformed.code, 0);
  assert.match(malformed.stderr, /shorter than|not SWMTKN-1/);
  const parts = workerToken.split("-");
  const wrongDigest = `SWMTKN-1-${"0".repeat(50)}-${parts[3]}`;
  const digest = await spare.cli(["join", "--token", wrongDigest, m1!.addr]);
  assert.notEqual(digest.code, 0);
  assert.match(digest.stderr, /does not match the join token/);
  const unknownSecret = `SWMTKN-1-${parts[2]}-${"1".repeat(25)}`;
  const invalid = await spare.cli(["join", "--token", unknownSecret, m1!.addr]);
  assert.match(invalid.stderr, /not valid for this cluster/);
  const rotated = await m1!.cli(["join-token", "worker", "--rotate", "-q"]);
  const newWorkerToken = rotated.stdout.trim();
  secrets.push(newWorkerToken);
  const old = await spare.cli(["join", "--token", workerToken, m1!.addr]);
  assert.match(old.stderr, /rotated/);
  await m1!.client.getJoinToken({ role: NodeRole.NODE_ROLE_WORKER, rotate: true, expiresInSeconds: 1n }).then((r) => secrets.push(r.token));
  const expiring = (await m1!.client.getJoinToken({ role: NodeRole.NODE_ROLE_WORKER, rotate: false, expiresInSeconds: 0n })).token;
  await new Promise((r) => setTimeout(r, 1200));
  const expired = await spare.cli(["join", "--token", expiring, m1!.addr]);
  assert.match(expired.stderr, /expired/);
  // Another cluster's token: its digest names another root CA.
  const other = await cluster.add("other");
  const otherInit = await cluster.init("other");
  secrets.push(otherInit.workerToken, otherInit.managerToken);
  const foreign = await spare.cli(["join", "--token", otherInit.workerToken, m1!.addr]);
  assert.match(foreign.stderr, /does not match the join token/);
  await other.stop();
  assert.equal((await spare.info()).state, "inactive");
  await spare.stop();

  // Promote a worker: its certificate renews at once with the manager OU and it joins raft.
  const w1Id = wInfo.nodeId;
  const promote = await m2!.cli(["node", "promote", w1Id]);
  assert.equal(promote.code, 0, promote.stderr);
  await waitFor("w1 to become a manager", async () => (await w1!.info()).role === NodeRole.NODE_ROLE_MANAGER || undefined, 20_000);
  await waitFor("w1 to be a raft voter", async () => (await m1!.client.getNode(w1Id)).managerStatus?.voter === true || undefined, 20_000);
  assert.equal(parseNodeCertificate(w1!.file("certificates/node.crt")).role, "swarm-manager");
  // And back.
  const demote = await m1!.cli(["node", "demote", w1Id]);
  assert.equal(demote.code, 0, demote.stderr);
  await waitFor("w1 to be a worker again", async () => (await w1!.info()).role === NodeRole.NODE_ROLE_WORKER || undefined, 20_000);
  assert.equal(parseNodeCertificate(w1!.file("certificates/node.crt")).role, "swarm-worker");
  await waitForVoters(m1!, 3, { what: "3 voters again" });

  // A zone label: the certificate is reissued at once with the zone in its SPIFFE URI.
  const w2Id = (await w2!.info()).nodeId;
  const serialBefore = new X509Certificate(w2!.file("certificates/node.crt")).serialNumber;
  const label = await m3!.cli(["node", "update", "--label-add", "zone=pci", w2Id]);
  assert.equal(label.code, 0, label.stderr);
  await waitFor("w2's certificate to carry zone pci", () => parseNodeCertificate(w2!.file("certificates/node.crt")).zone === "pci" || undefined, 20_000);
  assert.notEqual(new X509Certificate(w2!.file("certificates/node.crt")).serialNumber, serialBefore);

  // --cert-expiry applies from the next renewal.
  const upd = await m1!.cli(["update", "--cert-expiry", "2h"]);
  assert.equal(upd.code, 0, upd.stderr);
  await m1!.cli(["node", "update", "--label-add", "zone=gold", w2Id]);
  await waitFor("w2's certificate to be reissued for 2 h", () => {
    const c = parseNodeCertificate(w2!.file("certificates/node.crt"));
    return (c.zone === "gold" && c.notAfter.getTime() - Date.now() < 2.1 * 3600_000) || undefined;
  }, 20_000);

  // inspect shows the labels; --label-rm of the zone returns the node to zone "default" (reissued again).
  const inspect = await m1!.cli(["node", "inspect", w2Id]);
  assert.equal(inspect.code, 0, inspect.stderr);
  assert.match(inspect.stdout, /gold/);
  assert.equal((await m1!.cli(["node", "update", "--label-rm", "zone", w2Id])).code, 0);
  await waitFor("w2's certificate back in zone default", () => parseNodeCertificate(w2!.file("certificates/node.crt")).zone === "default" || undefined, 20_000);

  // Encryption at rest: a marker written through the control API is in no file of any manager.
  const marker = `marker-${Date.now()}-e2e-plaintext`;
  await m2!.putValue("at-rest", Buffer.from(marker));
  const secretFile = `${cluster.root}/secret.txt`;
  (await import("node:fs")).writeFileSync(secretFile, `secret-${marker}`);
  const created = await m3!.cli(["secret", "create", "s1", secretFile]);
  assert.equal(created.code, 0, created.stderr);
  assert.equal((await m1!.getValue("at-rest"))?.toString(), marker);
  // Read views never carry secret data, the CA key or the join tokens.
  const secretView = await m2!.cli(["secret", "inspect", "s1"]);
  assert.equal(secretView.code, 0, secretView.stderr);
  assert.equal(secretView.stdout.includes(marker), false);
  for (const secret of await m2!.client.listSecrets()) assert.equal(secret.spec?.data.length, 0, "a read API returned secret data");
  const clusterView = await m3!.client.getCluster();
  assert.equal(clusterView.rootCa?.caKeyPem.length, 0);
  assert.equal(clusterView.rootCa?.joinTokens?.worker, "");
  assert.equal(clusterView.unlockKey, "");
  await waitFor("m3 to apply the marker", async () => (await m3!.getValue("at-rest"))?.toString() === marker || undefined);
  for (const m of [m1!, m2!, m3!]) {
    await m.stop("SIGTERM"); // flush LevelDB's log to its files
    for (const file of filesUnder(m.dataDir)) {
      const bytes = readFileSync(file);
      assert.equal(bytes.includes(marker), false, `the marker is in plaintext in ${file}`);
    }
  }
  for (const m of [m1!, m2!, m3!]) await m.start();
  await waitFor("the cluster to come back", async () => (await m2!.getValue("at-rest"))?.toString() === marker || undefined, 20_000);

  // No token, unlock key or private key in any log line.
  const logs = cluster.logs();
  for (const s of secrets) assert.equal(logs.includes(s), false, "a join token appears in a daemon log");
  for (const n of cluster.nodes.values()) {
    const keyPem = (() => {
      try {
        return n.file("certificates/node.key");
      } catch {
        return "";
      }
    })();
    const body = keyPem.split("\n").filter((l) => !l.startsWith("-----") && l.length > 20);
    for (const line of body) assert.equal(logs.includes(line), false, "a private key appears in a daemon log");
  }
  assert.ok(logs.includes('"component":"manager"') && logs.includes('"nodeId":"'), "logs are JSON with nodeId and component");
  void expectCode;
});
