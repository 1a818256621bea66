// Root CA rotation across a leader failover (issue 11): the rotation's state lives in the replicated
// store, so when the leader is SIGKILLed mid-rotation the new leader goes on with it. A stopped
// worker holds the rotation open long enough to kill the leader while it is visibly in progress
// (some nodes done, the leader among them, not all); the worker then comes back and the new leader
// must bring it under the new root and finish. Checked with openssl on every node's certificate,
// the old token refused as rotated, and the killed manager, restarted afterwards, ending under the
// new root too. And a node back on an older certificate than the one issued to it (it died before
// writing the new one) is asked to renew again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { splitPemBundle } from "../../src/ca/index.js";
import { ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";
import type { RootCaView } from "../../src/cli/commands/root-ca.js";

const scratch = mkdtempSync(join(tmpdir(), "shoal-rotation-failover-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

function writeScratch(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

/** True when `openssl verify -CAfile root` accepts the leaf of a node.crt (no intermediates given). */
function opensslVerifies(rootPath: string, nodeCertPem: string, name: string): boolean {
  const leafPath = writeScratch(`${name}-leaf.pem`, splitPemBundle(nodeCertPem)[0]!);
  try {
    execFileSync("openssl", ["verify", "-CAfile", rootPath, leafPath], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
}

async function caView(node: NodeProcess): Promise<RootCaView> {
  const res = await node.cli(["ca", "--format", "json"]);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as RootCaView;
}

/** Waits until `node` writes the root `fingerprint` alone as its trust bundle; returns the PEM. */
function waitForRootAlone(node: NodeProcess, fingerprint: string, timeoutMs = 30_000): Promise<string> {
  return waitFor(`${node.name} to trust the new root alone`, () => {
    const pem = node.file("certificates/root-ca.crt");
    const roots = splitPemBundle(pem);
    return roots.length === 1 && fingerprintOf(roots[0]!) === fingerprint ? pem : undefined;
  }, timeoutMs);
}

test("the leader SIGKILLed mid-rotation: the new leader completes it; every node, the killed one too once restarted, ends under the new root", { timeout: 240_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, m2, m3, w1, w2] = await Promise.all(["m1", "m2", "m3", "w1", "w2"].map((n) => cluster.add(n)));
  const { workerToken, managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1!.addr);
  await cluster.join("m3", managerToken, m1!.addr);
  await cluster.join("w1", workerToken, m1!.addr);
  await cluster.join("w2", workerToken, m1!.addr);
  await cluster.waitReady(m1!, 5);
  await waitForVoters(m1!, 3, { timeoutMs: 20_000 });
  const managers = [m1!, m2!, m3!];
  const oldRootPath = writeScratch("old-root.pem", m1!.file("certificates/root-ca.crt"));
  const before = await caView(m1!);

  // w2 stopped: the rotation cannot converge until it is back, so the leader can be killed while
  // the rotation is visibly under way however fast the other nodes renew.
  const w2Id = (await w2!.info()).nodeId;
  await w2!.stop();
  await waitFor("w2 to be down", async () => (await m1!.client.listNodes()).some((n) => n.id === w2Id && n.status?.state === 1), 20_000);

  const oldLeader = await cluster.leader();
  const started = await oldLeader.cli(["ca", "--rotate", "--detach", "--format", "json"]);
  assert.equal(started.code, 0, started.stderr);
  const target = (JSON.parse(started.stdout) as RootCaView).rotation?.target.fingerprint;
  assert.ok(target !== undefined && target !== before.root.fingerprint, "--detach returns while the rotation to a new root runs");
  // Killed once its own certificate is under the new root (else the rotation would wait for it, a
  // down node, until it is back or removed) and while w2 still holds the rotation open.
  const oldLeaderId = (await oldLeader.info()).nodeId;
  const inProgress = await waitFor("the leader to be done, and not every node", async () => {
    const view = await caView(oldLeader);
    const r = view.rotation;
    return r !== undefined && r.nodesDone > 0 && r.nodesDone < r.nodesTotal && !r.waitingFor.some((n) => n.nodeId === oldLeaderId) ? view : undefined;
  }, 30_000);
  t.diagnostic(`killing the leader ${oldLeader.name} at ${inProgress.rotation!.nodesDone}/${inProgress.rotation!.nodesTotal} nodes done`);
  await oldLeader.stop("SIGKILL");

  const survivors = managers.filter((m) => m !== oldLeader);
  const newLeader = await waitFor("a new leader", async () => {
    const leader = await cluster.leader(20_000);
    return leader !== oldLeader ? leader : undefined;
  }, 30_000);
  // The new leader knows the rotation from the store: same target, still waiting for w2.
  const carried = await waitFor("the new leader to report the rotation", async () => {
    const view = await caView(newLeader);
    return view.rotation !== undefined ? view : undefined;
  }, 20_000);
  assert.equal(carried.rotation!.target.fingerprint, target, "the new leader goes on to the same root");
  assert.ok(carried.rotation!.waitingFor.some((n) => n.nodeId === w2Id), "the new leader still waits for w2");

  // w2 back: only the new leader can ask it to renew and then finish the rotation.
  await w2!.start();
  let last: RootCaView | undefined;
  const done = await waitFor("the rotation to finish on the new leader", async () => {
    last = await caView(newLeader);
    return last.rotation === undefined ? last : undefined;
  }, 60_000, 250).catch((err: unknown) => {
    throw new Error(`${String(err)}; last seen: ${JSON.stringify(last?.rotation)}`);
  });
  assert.equal(done.root.fingerprint, target, "the cluster's root is the rotation's target");

  const live = [...survivors, w1!, w2!];
  const newRootPath = writeScratch("new-root.pem", await waitForRootAlone(newLeader, target));
  for (const node of live) {
    await waitForRootAlone(node, target);
    const certPem = await waitFor(`${node.name}'s certificate to be under the new root`, () => {
      const pem = node.file("certificates/node.crt");
      return opensslVerifies(newRootPath, pem, node.name) ? pem : undefined;
    }, 30_000);
    assert.ok(!opensslVerifies(oldRootPath, certPem, node.name), `${node.name}'s certificate does not verify under the old root alone`);
  }

  // The old worker token pins the old root: refused as rotated.
  const w3 = await cluster.add("w3");
  const refused = await w3.cli(["join", "--token", workerToken, newLeader.addr]);
  assert.notEqual(refused.code, 0, "the old worker token is refused");
  assert.match(refused.stderr, /rotated/i);

  // The killed manager comes back after the rotation: it learns the new root alone and its
  // certificate (renewed before it died, or on its return) is under it.
  await oldLeader.start();
  await waitForRootAlone(oldLeader, target, 60_000);
  await waitFor(`${oldLeader.name}'s certificate to be under the new root`, () => opensslVerifies(newRootPath, oldLeader.file("certificates/node.crt"), oldLeader.name) || undefined, 30_000);
  assert.ok(!opensslVerifies(oldRootPath, oldLeader.file("certificates/node.crt"), oldLeader.name), `${oldLeader.name}'s certificate does not verify under the old root alone`);
  await waitForVoters(newLeader, 3, { timeoutMs: 30_000 });
  await cluster.waitReady(newLeader, 5, 30_000);
});

// The window between the CA storing a node's new certificate and the node writing it cannot be hit
// from outside; putting w1's old files back after its renewal brings it back the same way: on a
// certificate older than the one the store says was issued to it.
test("a node that comes back during the rotation on an older certificate than the one issued to it is asked to renew, and ends under the new root", { timeout: 240_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, w1, w2] = await Promise.all(["m1", "w1", "w2"].map((n) => cluster.add(n)));
  const { workerToken } = await cluster.init("m1");
  await cluster.join("w1", workerToken, m1!.addr);
  await cluster.join("w2", workerToken, m1!.addr);
  await cluster.waitReady(m1!, 3);
  const oldRootPath = writeScratch("lost-old-root.pem", m1!.file("certificates/root-ca.crt"));
  // What w1 has on disk before the rotation: put back after its renewal, as if it had died before writing.
  const files = ["certificates/node.crt", "certificates/node.key", "certificates/root-ca.crt"];
  const saved = files.map((f) => [f, w1!.file(f)] as const);
  const [w1Id, w2Id] = await Promise.all([w1!.info(), w2!.info()].map(async (i) => (await i).nodeId));
  // w2 down holds the rotation open.
  await w2!.stop();
  await waitFor("w2 to be down", async () => (await m1!.client.listNodes()).some((n) => n.id === w2Id && n.status?.state === 1), 20_000);
  const started = await m1!.cli(["ca", "--rotate", "--detach", "--format", "json"]);
  assert.equal(started.code, 0, started.stderr);
  const target = (JSON.parse(started.stdout) as RootCaView).rotation!.target.fingerprint;
  await waitFor("w1 to be done", async () => {
    const r = (await caView(m1!)).rotation;
    return r !== undefined && !r.waitingFor.some((n) => n.nodeId === w1Id) ? true : undefined;
  }, 30_000);
  await w1!.stop("SIGKILL");
  for (const [f, text] of saved) writeFileSync(join(w1!.dataDir, f), text, { mode: 0o600 });
  assert.ok(opensslVerifies(oldRootPath, w1!.file("certificates/node.crt"), "w1-restored"), "w1 is back on its old-root certificate");
  await w1!.start();
  // w1 came with an older certificate than the one issued to it: it renews, and only then is it done.
  await waitFor("w1 to renew under the new root", () => {
    const pem = w1!.file("certificates/node.crt");
    return !opensslVerifies(oldRootPath, pem, "w1-renewed") || undefined;
  }, 30_000);
  await w2!.start();
  await waitFor("the rotation to finish", async () => (await caView(m1!)).rotation === undefined || undefined, 60_000, 250);
  const newRootPath = writeScratch("lost-new-root.pem", await waitForRootAlone(m1!, target));
  for (const node of [m1!, w1!, w2!]) {
    await waitForRootAlone(node, target);
    await waitFor(`${node.name}'s certificate to be under the new root`, () => opensslVerifies(newRootPath, node.file("certificates/node.crt"), node.name) || undefined, 30_000);
  }
  await cluster.waitReady(m1!, 3, 30_000);
});
