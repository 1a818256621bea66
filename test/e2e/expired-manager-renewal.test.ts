// A manager whose certificate expired while it was down renews through a live manager (issue 11):
// four manager daemons as child processes on 127.0.0.1. m3 and m4 join while the cluster's
// certificate expiry is 1 h (then it goes back to 90 days); m4 is stopped, demoted and removed, m3
// is stopped, the manager token is rotated. Both restart through a test-only launcher whose clock
// reads 65 minutes ahead (test/e2e/fixtures/shoal-shifted-clock.js), so their certificates are
// expired to them while TLS and the other managers keep the real time.
// - m3 without the flag: exits 4 (CERT_EXPIRED) naming both ways back;
// - m3 with the worker token, a wrong token, a malformed one and the rotated manager token: refused
//   with TOKEN_INVALID / TOKEN_MALFORMED / TOKEN_ROTATED, nothing changes;
// - a request whose proof is not signed by m3's old key (sent by the test itself): UNAUTHENTICATED;
// - m3 with the current manager token: renewed by a live manager (same node ID, role, raft ID, new
//   serial), back in raft, `node ls` shows 3 ready managers, writes commit through it;
// - m4 (removed while down) with the current token: refused as revoked, does not come back;
// - the leader logged each outcome, and no log holds a token.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { isShoalError } from "../../src/base/errors.js";
import { createNodeKeyAndCsr, parseJoinToken, parseNodeCertificate, signExpiredRenewalProof } from "../../src/ca/index.js";
import { CAClient, type RenewExpiredManagerCertificateRequest, type RenewExpiredManagerCertificateResponse } from "../../src/proto/shoal/v1/ca.js";
import { NodeRole, NodeState } from "../../src/proto/shoal/v1/objects.js";
import { readNodeKey } from "../../src/storage/index.js";
import { createJoinChannel, fetchRootCA, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { callWithLeaderRedirect } from "../../src/transport/leader.js";
import { FAST_DAEMON_FLAGS, ProcessCluster, REPO_ROOT, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";

const SHIFTED_LAUNCHER = join(REPO_ROOT, "test", "e2e", "fixtures", "shoal-shifted-clock.js");
const OFFSET_MS = 65 * 60_000;

function certOf(node: NodeProcess) {
  return parseNodeCertificate(node.file("certificates/node.crt"));
}

/** Starts `node` through the shifted-clock launcher with `flags`; resolves with the exit code and what it printed, if it exits during start. */
async function startShifted(node: NodeProcess, flags: string[]): Promise<{ exited: true; code: number | null; output: string } | { exited: false }> {
  node.bin = SHIFTED_LAUNCHER;
  node.env = { SHOAL_TEST_CLOCK_OFFSET_MS: String(OFFSET_MS) };
  node.restartFlags = flags;
  const before = node.readLog().length;
  try {
    await node.start();
    return { exited: false };
  } catch (err) {
    const status = await node.exited;
    if (status.code === null && status.signal === null) throw err;
    return { exited: true, code: status.code, output: node.readLog().slice(before) };
  }
}

/** Sends RenewExpiredManagerCertificate to the leader, as the test (not a daemon) builds it. */
async function renewDirectly(via: NodeProcess, token: string, req: Omit<RenewExpiredManagerCertificateRequest, "token">): Promise<RenewExpiredManagerCertificateResponse> {
  const rootPem = await fetchRootCA(via.addr, parseJoinToken(token).caDigest);
  const result = await callWithLeaderRedirect<SecureChannel, RenewExpiredManagerCertificateResponse>({
    address: via.addr,
    connect: (a) => createJoinChannel(a, rootPem),
    call: (ch) =>
      unaryCall<RenewExpiredManagerCertificateResponse>((cb) =>
        ch.client(CAClient).renewExpiredManagerCertificate({ ...req, token }, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, cb),
      ),
  });
  result.connection.close();
  return result.value;
}

test("a manager whose certificate expired while it was down renews through a live manager with the manager token; wrong tokens, a wrong proof and a removed manager are refused", { timeout: 600_000 }, async (t) => {
  const cluster = new ProcessCluster(FAST_DAEMON_FLAGS, mkdtempSync(join(tmpdir(), "shoal-expired-mgr-")));
  const began = Date.now();
  const step = (what: string): void => console.log(`[${((Date.now() - began) / 1000).toFixed(1)} s] ${what}`);
  let failed = true;
  t.after(async () => {
    if (failed) {
      for (const n of cluster.nodes.values()) console.error(`---- ${n.name} (${n.exitStatus}) ----\n${n.readLog().slice(-6000)}`);
    }
    await cluster.close({ keep: failed });
  });
  // One at a time: four tsx compilations at once can outlast the start timeout on a loaded machine.
  const [m1, m2, m3, m4] = [await cluster.add("m1"), await cluster.add("m2"), await cluster.add("m3"), await cluster.add("m4")];
  step("4 daemons started");
  const { workerToken, managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1!.addr);
  // m3 and m4 get 1-hour certificates; the renewals afterwards get 90 days again.
  assert.equal((await m1!.cli(["update", "--cert-expiry", "1h"])).code, 0);
  await cluster.join("m3", managerToken, m1!.addr);
  await cluster.join("m4", managerToken, m1!.addr);
  assert.equal((await m1!.cli(["update", "--cert-expiry", "2160h"])).code, 0);
  await waitForVoters(m1!, 4, { timeoutMs: 30_000 });
  for (const n of [m3!, m4!]) assert.ok(certOf(n).notAfter.getTime() - Date.now() < 3_700_000, `${n.name} holds a 1-hour certificate`);
  assert.ok(certOf(m1!).notAfter.getTime() - Date.now() > 24 * 3_600_000, "m1 holds a long certificate");
  const m3Id = (await m3!.info()).nodeId;
  const m4Id = (await m4!.info()).nodeId;
  const m3Raft = (await m1!.client.getNode(m3Id)).managerStatus!.raftId;

  step("4 managers in raft");
  // m4: stopped, then demoted and removed while it is down.
  await m4!.stop();
  const m4Serial = certOf(m4!).serial;
  await waitFor("m4 demoted and removed", async () => {
    const node = (await m1!.client.listNodes()).find((n) => n.id === m4Id);
    if (node === undefined) return true;
    if (node.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER) await m1!.cli(["node", "demote", m4Id]);
    else await m1!.cli(["node", "rm", "--force", m4Id]);
    return undefined;
  }, 60_000);
  await waitForVoters(m1!, 3, { timeoutMs: 30_000 });

  // m3: stopped; the manager token is rotated while it is down.
  await m3!.stop();
  const before = certOf(m3!);
  const rotate = await m1!.cli(["join-token", "manager", "--rotate", "-q"]);
  assert.equal(rotate.code, 0, rotate.stderr);
  const currentManagerToken = rotate.stdout.trim();
  assert.notEqual(currentManagerToken, managerToken);
  const tokenFile = (name: string, token: string): string => {
    const path = join(cluster.root, `${name}.token`);
    writeFileSync(path, `${token}\n`, { mode: 0o600 });
    return path;
  };
  const unchanged = async (what: string): Promise<void> => {
    assert.equal(certOf(m3!).serial, before.serial, `${what}: m3's certificate on disk is unchanged`);
    const record = (await m1!.client.getNode(m3Id)).certificate!;
    assert.equal(record.serial, before.serial, `${what}: the store's record of m3's certificate is unchanged`);
  };

  step("m4 removed, m3 down, manager token rotated");
  // Without the flag: exit 4, naming both ways back.
  const plain = await startShifted(m3!, []);
  assert.ok(plain.exited, "m3 without --renew-expired must not start");
  assert.equal(plain.code, 4, plain.output);
  assert.match(plain.output, /expired at .* while the node was down/);
  assert.match(plain.output, /--renew-expired --renew-expired-token-file FILE/);
  assert.match(plain.output, /`shoal daemon --renew-expired` alone/);

  // Wrong tokens: each refused with its code, nothing changes.
  const wrongSecret = `SWMTKN-1-${parseJoinToken(managerToken).caDigest}-${"0".repeat(25)}`;
  const refusals: { name: string; token: string; exit: number; message: RegExp }[] = [
    { name: "worker", token: workerToken, exit: 4, message: /this is the worker join token/ },
    { name: "wrong", token: wrongSecret, exit: 4, message: /join token is not valid for this cluster/ },
    { name: "malformed", token: "not-a-token", exit: 2, message: /join token does not start with "SWMTKN-"/ },
    { name: "rotated", token: managerToken, exit: 4, message: /this join token was rotated/ },
  ];
  for (const r of refusals) {
    const res = await startShifted(m3!, ["--renew-expired", "--renew-expired-token-file", tokenFile(r.name, r.token)]);
    assert.ok(res.exited, `m3 with the ${r.name} token must not start`);
    assert.equal(res.code, r.exit, `${r.name} token: ${res.output}`);
    assert.match(res.output, r.message, `${r.name} token`);
    await unchanged(`the ${r.name} token`);
  }

  step("wrong tokens refused");
  // A request whose proof is not by m3's old key, and one whose proof is for another CSR: refused.
  const oldKey = await readNodeKey(join(m3!.dataDir, "certificates/node.key"));
  const expiredCertificate = Buffer.from(m3!.file("certificates/node.crt"));
  const fresh = await createNodeKeyAndCsr();
  const csr = Buffer.from(fresh.csrPem);
  const clusterId = before.clusterId;
  const proofs = [
    { what: "signed by the new key", proof: signExpiredRenewalProof(fresh.privateKey, { clusterId, nodeId: m3Id, csr }) },
    { what: "for another CSR", proof: signExpiredRenewalProof(oldKey, { clusterId, nodeId: m3Id, csr: Buffer.from((await createNodeKeyAndCsr()).csrPem) }) },
    { what: "missing", proof: Buffer.alloc(0) },
  ];
  for (const p of proofs) {
    await assert.rejects(renewDirectly(m1!, currentManagerToken, { expiredCertificate, csr, proof: p.proof }), (e) => {
      assert.ok(isShoalError(e, "UNAUTHENTICATED"), `a proof ${p.what}: ${String(e)}`);
      assert.match((e as Error).message, /proof of possession failed/);
      return true;
    });
    await unchanged(`a proof ${p.what}`);
  }

  step("wrong proofs refused");
  // The current manager token: a live manager renews m3, which rejoins raft with its raft ID.
  const renewed = await startShifted(m3!, ["--renew-expired", "--renew-expired-token-file", tokenFile("current", currentManagerToken)]);
  assert.equal(renewed.exited, false, renewed.exited ? renewed.output : "");
  const after = certOf(m3!);
  assert.notEqual(after.serial, before.serial);
  assert.deepEqual({ nodeId: after.nodeId, clusterId: after.clusterId, role: after.role, zone: after.zone }, { nodeId: m3Id, clusterId, role: "swarm-manager", zone: before.zone });
  assert.ok(after.notAfter.getTime() - Date.now() > 24 * 3_600_000, "the new certificate has the cluster's current validity");
  const record = await m1!.client.getNode(m3Id);
  assert.equal(record.certificate!.serial, after.serial);
  assert.ok(record.certificate!.issuedSerials.includes(before.serial), "the old serial is kept for revocation");
  assert.equal(record.managerStatus!.raftId, m3Raft, "the raft membership did not change");
  assert.equal(JSON.parse(m3!.file("node.json")).raftId, m3Raft.toString());
  await waitForVoters(m1!, 3, { timeoutMs: 30_000 });
  await cluster.waitReady(m1!, 3, 60_000);
  const nodes = await m1!.client.listNodes();
  assert.deepEqual(nodes.map((n) => n.id).sort(), [(await m1!.info()).nodeId, (await m2!.info()).nodeId, m3Id].sort());
  assert.ok(nodes.every((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.status?.state === NodeState.NODE_STATE_READY && n.managerStatus?.voter));
  const ls = await m3!.cli(["node", "ls"]);
  assert.equal(ls.code, 0, ls.stderr);
  assert.equal(ls.stdout.split("\n").filter((l) => l.includes("manager") || /Leader|Reachable/.test(l)).length, 3, ls.stdout);
  step("m3 renewed and ready");
  // Writes commit through it and reach it.
  await waitFor("a write through m3", async () => ((await m3!.putValue("after-renewal", Buffer.from("m3"))) > 0n ? true : undefined), 30_000);
  assert.equal((await m1!.getValue("after-renewal"))?.toString(), "m3");
  await m1!.putValue("from-m1", Buffer.from("m1"));
  await waitFor("m3 to apply m1's write", async () => ((await m3!.getValue("from-m1"))?.toString() === "m1" ? true : undefined), 30_000);

  step("writes commit through m3");
  // m4, removed while it was down, cannot use the path even with the current token.
  const removed = await startShifted(m4!, ["--renew-expired", "--renew-expired-token-file", tokenFile("m4", currentManagerToken)]);
  assert.ok(removed.exited, "the removed manager must not start");
  assert.equal(removed.code, 4, removed.output);
  assert.match(removed.output, /removed/);
  assert.equal(certOf(m4!).serial, m4Serial);
  assert.ok(!(await m1!.client.listNodes()).some((n) => n.id === m4Id), "the removed node did not come back");

  // Every path in the leader's log, with its code; no token anywhere.
  const logs = cluster.logs();
  assert.match(logs, /renewed the expired certificate of a manager/);
  for (const code of ["TOKEN_INVALID", "TOKEN_ROTATED", "UNAUTHENTICATED", "CERT_REVOKED"]) {
    assert.ok(logs.split("\n").some((l) => l.includes("refused to renew an expired manager certificate") && l.includes(`"code":"${code}"`)), `a refusal logged with ${code}`);
  }
  for (const token of [workerToken, managerToken, currentManagerToken, wrongSecret]) {
    const secret = token.slice(token.lastIndexOf("-") + 1);
    assert.ok(!logs.includes(secret), "a token's secret is in a daemon log");
  }
  step("m4 refused; done");
  failed = false;
});
