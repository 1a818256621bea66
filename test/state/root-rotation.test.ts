// Progress of a root CA rotation from the store: which nodes are done (their certificate is under the
// new root and their session uses it), which the rotation waits for (down ones included, so that
// `shoal ca` can name them), and which have been issued one they do not use yet.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { createRootCA } from "../../src/ca/index.js";
import { CertificateStatus, Cluster, Node, NodeState } from "../../src/proto/shoal/v1/objects.js";
import { isNodeDown, rootRotationProgress } from "../../src/state/index.js";
import { issue } from "../ca/fixtures.js";

const clock = new ManualClock(Date.UTC(2030, 0, 1));
const oldRootPromise = createRootCA({ clock });
const newRootPromise = createRootCA({ clock });

async function node(id: string, under: "old" | "new" | "none", opts: { state?: NodeState; uses?: "it" | "other" | "nothing" } = {}): Promise<Node> {
  const issued = under === "none" ? undefined : await issue(under === "old" ? await oldRootPromise : await newRootPromise, clock);
  const uses = opts.uses ?? "it";
  return Node.fromPartial({
    id,
    status: {
      state: opts.state ?? NodeState.NODE_STATE_READY,
      ...(uses === "it" && issued !== undefined ? { certSerial: issued.serial } : uses === "other" ? { certSerial: "0A0B0C" } : {}),
    },
    ...(issued !== undefined ? { certificate: { status: CertificateStatus.CERTIFICATE_STATUS_ISSUED, certificate: Buffer.from(issued.certPem), serial: issued.serial } } : {}),
  });
}

async function rotatingCluster(): Promise<Cluster> {
  const [oldRoot, newRoot] = await Promise.all([oldRootPromise, newRootPromise]);
  return Cluster.fromPartial({ id: "c", rootCa: { caCertPem: Buffer.from(oldRoot.certPem), rootRotation: { caCertPem: Buffer.from(newRoot.certPem), caKeyPem: Buffer.from(newRoot.keyPem!) } } });
}

const ids = (nodes: readonly Node[]): string[] => nodes.map((n) => n.id).sort();

test("no rotation in progress: no progress", async () => {
  const oldRoot = await oldRootPromise;
  const nodes = [await node("a", "old")];
  assert.equal(rootRotationProgress(undefined, nodes), undefined);
  assert.equal(rootRotationProgress(Cluster.fromPartial({ id: "c", rootCa: { caCertPem: Buffer.from(oldRoot.certPem) } }), nodes), undefined);
});

test("done when the certificate is under the new root and in use; waiting otherwise, down nodes listed; done/total", async () => {
  const nodes = [
    await node("done", "new"),
    await node("done-down", "new", { state: NodeState.NODE_STATE_DOWN }),
    await node("old", "old"),
    await node("old-down", "old", { state: NodeState.NODE_STATE_DOWN }),
    await node("issued-not-used", "new", { uses: "other" }),
    await node("never-seen", "new", { uses: "nothing" }),
    await node("no-cert", "none"),
  ];
  const progress = rootRotationProgress(await rotatingCluster(), nodes)!;
  assert.deepEqual(ids(progress.done), ["done", "done-down"]);
  assert.deepEqual(ids(progress.waiting), ["issued-not-used", "never-seen", "no-cert", "old", "old-down"]);
  assert.equal(progress.done.length + progress.waiting.length, nodes.length, "every node is either done or waited for");
  assert.deepEqual(progress.waiting.filter(isNodeDown).map((n) => n.id), ["old-down"], "a down node is among those the rotation waits for, and known as down");
  assert.deepEqual(ids(progress.issuedNotInUse), ["issued-not-used", "never-seen"], "issued under the new root, not used yet: not to be asked again");
});

test("every node done: nothing to wait for", async () => {
  const nodes = [await node("a", "new"), await node("b", "new", { state: NodeState.NODE_STATE_DOWN })];
  const progress = rootRotationProgress(await rotatingCluster(), nodes)!;
  assert.equal(progress.waiting.length, 0);
  assert.equal(progress.done.length, 2);
});
