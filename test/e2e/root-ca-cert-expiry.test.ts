// `shoal ca --cert-expiry D` (issue 11) against a real manager and worker: it changes the cluster's
// node certificate validity as `shoal update --cert-expiry` does (the certificates a rotation then
// issues have it), and refuses the same bad values with the same exit code and message, changing nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseNodeCertificate } from "../../src/ca/index.js";
import { ProcessCluster, waitFor, type NodeProcess } from "./cluster.js";
import type { RootCaView } from "../../src/cli/commands/root-ca.js";

async function caView(node: NodeProcess): Promise<RootCaView> {
  const res = await node.cli(["ca", "--format", "json"]);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as RootCaView;
}

async function expirySeconds(node: NodeProcess): Promise<bigint> {
  return (await node.client.getCluster()).spec?.caConfig?.nodeCertExpirySeconds ?? 0n;
}

/** Hours of validity of a node's current certificate (notBefore is backdated by one hour). */
function validityHours(node: NodeProcess): number {
  const cert = parseNodeCertificate(node.file("certificates/node.crt"));
  return (cert.notAfter.getTime() - Date.now()) / 3600_000;
}

test("ca --cert-expiry changes the node certificate validity as update --cert-expiry does; bad values are refused alike", { timeout: 120_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, w1] = await Promise.all(["m1", "w1"].map((n) => cluster.add(n)));
  const { workerToken } = await cluster.init("m1");
  await cluster.join("w1", workerToken, m1!.addr);
  await cluster.waitReady(m1!, 2);
  assert.equal((await caView(m1!)).nodeCertExpiry, "2160h");

  // Alone: only the setting changes, as with update.
  const set = await m1!.cli(["ca", "--cert-expiry", "48h", "--format", "json"]);
  assert.equal(set.code, 0, set.stderr);
  assert.equal((JSON.parse(set.stdout) as RootCaView).nodeCertExpiry, "48h");
  assert.equal(await expirySeconds(m1!), 48n * 3600n);
  const viaUpdate = await m1!.cli(["update", "--cert-expiry", "72h"]);
  assert.equal(viaUpdate.code, 0, viaUpdate.stderr);
  assert.equal((await caView(m1!)).nodeCertExpiry, "72h", "both commands change the same setting");

  // Bad values: the same code and message as update, and nothing changes.
  for (const bad of ["30m", "59m59s", "soon", "-1h", ""]) {
    const viaCa = await m1!.cli(["ca", "--cert-expiry", bad]);
    const viaUpd = await m1!.cli(["update", "--cert-expiry", bad]);
    assert.equal(viaCa.code, 2, `ca --cert-expiry ${JSON.stringify(bad)}: ${viaCa.stderr}`);
    assert.equal(viaCa.code, viaUpd.code, `same exit code as update for ${JSON.stringify(bad)}`);
    assert.equal(viaCa.stderr, viaUpd.stderr, `same message as update for ${JSON.stringify(bad)}`);
    const alsoRotate = await m1!.cli(["ca", "--rotate", "--cert-expiry", bad]);
    assert.equal(alsoRotate.code, 2, `ca --rotate --cert-expiry ${JSON.stringify(bad)} is refused before rotating`);
  }
  const unchanged = await caView(m1!);
  assert.equal(unchanged.nodeCertExpiry, "72h");
  assert.equal(unchanged.rotation, undefined, "a refused --cert-expiry started no rotation");

  // With --rotate: the certificates the rotation issues have the new validity.
  const before = await caView(m1!);
  const rotated = await m1!.cli(["ca", "--rotate", "--cert-expiry", "3h", "--format", "json"]);
  assert.equal(rotated.code, 0, rotated.stderr);
  const after = JSON.parse(rotated.stdout) as RootCaView;
  assert.equal(after.nodeCertExpiry, "3h");
  assert.notEqual(after.root.fingerprint, before.root.fingerprint);
  for (const node of [m1!, w1!]) {
    const hours = await waitFor(`${node.name}'s certificate to be valid for 3 h`, () => {
      const h = validityHours(node);
      return h < 3.1 ? h : undefined;
    }, 30_000);
    assert.ok(hours > 2, `${node.name}: about 3 h left (${hours.toFixed(2)} h)`);
  }
});
