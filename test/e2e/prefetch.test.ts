// P2P image prefetch end to end (issue 10, DESIGN.md §3 rule 9 and §8), with real parts: a TLS
// registry with Basic auth (Debian's docker-registry) behind a TCP relay that counts what the
// registry sends, 3 managers and 6 workers as child processes (zone a: 4, zone b: 2) with a download
// rate limit so that transfers take seconds, runc containers. A zone-a service of a 64 MiB image:
// its tasks run on the zone-a workers only; the registry sends the image about once (the seed's
// pull; the others fetch from their peers); the zone-b workers never receive a piece or the job; a
// zone-a worker removed with `node rm --force` mid-transfer is refused by every peer (CERT_REVOKED)
// and the job completes on the others; the registry login is on no worker's disk and in no log.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCountingRelay, type CountingRelay } from "../../scripts/lib/counting-relay.js";
import { startRegistry } from "../../scripts/lib/registry.js";
import { buildTestImage } from "../../scripts/lib/test-image.js";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { dataDirPaths } from "../../src/storage/paths.js";
import { PeerClient } from "../../src/agent/p2p/peer-client.js";
import { parseManifestOrIndex } from "../../src/oci/manifest.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { filesContaining, waitFor } from "./cluster.js";
import { startZonedCluster, withNodeLogsOnFailure } from "./zoned-cluster.js";

const MiB = 1024 * 1024;
const IMAGE_BYTES = 64 * MiB;
/** Per worker: 64 MiB from peers takes about 4 s, long enough to remove a worker in the middle. */
const DOWNLOAD_RATE = 16 * MiB;

interface JobRow {
  jobId: string;
  state: string;
  sizeBytes: number;
  nodes: { nodeId: string; zone: string; role: string; state: string; bytesFromPeers: number; bytesFromRegistry: number }[];
}

test("P2P prefetch: one registry pull for a zone, peers for the rest, nothing for zone b, a removed worker refused, no login on a worker", { timeout: 600_000 }, async (t) => {
  const user = { username: "puller", password: randomBytes(12).toString("hex") };
  const basic = Buffer.from(`${user.username}:${user.password}`).toString("base64");
  let relay: CountingRelay | undefined;
  let caPem = "";
  let upstreamHost = "";
  const z = await startZonedCluster(t, {
    managers: ["m1", "m2", "m3"],
    workers: [["a1", "a"], ["a2", "a"], ["a3", "a"], ["a4", "a"], ["b1", "b"], ["b2", "b"]],
    workerFlags: ["--p2p-download-rate", String(DOWNLOAD_RATE)],
    image: async () => {
      const registry = await startRegistry({ htpasswd: [user], tls: true });
      t.after(() => registry.stop());
      caPem = registry.caPem!;
      upstreamHost = registry.host;
      await buildTestImage({ registry: registry.host, name: "shoal-e2e/big", tag: "1", extraLayerBytes: IMAGE_BYTES, credentials: user });
      relay = await startCountingRelay(registry.port);
      t.after(() => relay!.close());
      return `${relay.host}/shoal-e2e/big:1`;
    },
  });
  await withNodeLogsOnFailure(t, z.cluster, async () => {
    const { cluster, ids, image, nameOf } = z;
    const workers = new Map(z.workers.map((w) => [w.name, w]));
    const zoneA = ["a1", "a2", "a3", "a4"].map((n) => ids.get(n)!);
    const zoneB = ["b1", "b2"];

    // The image's size as the registry has it: config and layers.
    const reader = new RegistryClient({ access: () => ({ ca: caPem, credentials: user }) });
    const ref = parseImageReference(`${upstreamHost}/shoal-e2e/big:1`);
    const fetched = await reader.fetchManifest(ref, "1");
    const manifest = parseManifestOrIndex(fetched.bytes, fetched.contentType, "test image");
    assert.equal(manifest.kind, "manifest");
    const blobs = manifest.kind === "manifest" ? [manifest.config, ...manifest.layers] : [];
    const imageSize = blobs.reduce((sum, b) => sum + b.size, 0);
    assert.ok(imageSize > IMAGE_BYTES);
    const bigLayer = blobs.reduce((a, b) => (b.size > a.size ? b : a));

    // The login goes to the managers only.
    const dir = mkdtempSync(join(tmpdir(), "shoal-e2e-ca-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "ca.pem"), caPem);
    const login = await z.m1.shoal(["registry", "login", relay!.host, "-u", user.username, "--password-stdin", "--ca-file", join(dir, "ca.pem")], { input: `${user.password}\n` });
    assert.equal(login.code, 0, login.stderr);
    const before = relay!.sent();

    const createdAt = Date.now();
    await z.ok(["service", "create", "--name", "big", "--zone", "a", "--replicas", "4", "--image", image, "--", "sleep", "600"]);
    const jobs = async (): Promise<JobRow[]> => JSON.parse(await z.ok(["image", "prefetch", "status", "big", "--format", "json"])) as JobRow[];

    // Mid-transfer: a zone-a peer (not the seed) that has some of the image and not all of it.
    const certs = new Map<string, { certPem: string; keyPem: string }>();
    const rootCaPem = readFileSync(dataDirPaths(z.m1.dataDir).rootCaFile, "utf8");
    for (const name of ["a1", "a2", "a3", "a4"]) {
      const paths = dataDirPaths(workers.get(name)!.dataDir);
      certs.set(ids.get(name)!, { certPem: readFileSync(paths.nodeCertFile, "utf8"), keyPem: readFileSync(paths.nodeKeyFile, "utf8") });
    }
    const victimId = await waitFor(
      "a zone-a peer partway through its transfer",
      async () => {
        const job = (await jobs())[0];
        const node = job?.nodes.find((n) => n.role === "peer" && n.bytesFromPeers > 0 && n.bytesFromPeers < job.sizeBytes * 0.8);
        return node?.nodeId;
      },
      120_000,
      100,
    );
    const victim = z.workers.find((w) => ids.get(w.name) === victimId)!;
    t.diagnostic(`removing ${victim.name} mid-transfer, ${Date.now() - createdAt} ms after service create`);
    await z.ok(["node", "rm", "--force", victimId]);
    const removedAt = Date.now();

    // Every remaining zone-a peer refuses the removed node's certificate.
    const others = z.workers.filter((w) => zoneA.includes(ids.get(w.name)!) && w !== victim);
    const client = new PeerClient({ clusterId: (await z.m1.info()).clusterId, rootCaPem, identity: certs.get(victimId)!, clock: systemClock });
    t.after(() => client.close());
    for (const peer of others) {
      await waitFor(
        `${peer.name} to refuse the removed ${victim.name}`,
        async () => {
          try {
            await client.have(peer.addr, bigLayer.digest, Buffer.alloc(0), { timeoutMs: 5000 });
            return undefined;
          } catch (err) {
            if (isShoalError(err, "CERT_REVOKED") || isShoalError(err, "UNAUTHENTICATED")) return true;
            return undefined;
          }
        },
        30_000,
        100,
      );
    }
    t.diagnostic(`every remaining zone-a peer refuses the removed node ${Date.now() - removedAt} ms after node rm`);

    // The job completes on the others; the tasks run on zone-a workers only.
    const running = async () => (await z.tasks("big")).filter((r) => r.desiredState === "running" && r.state === "running");
    await waitFor("4 running tasks of big", async () => ((await running()).length === 4 ? true : undefined), 240_000, 500);
    t.diagnostic(`service create → 4/4 running with P2P prefetch: ${Date.now() - createdAt} ms`);
    for (const r of await running()) assert.ok(zoneA.includes(r.nodeId) && r.nodeId !== victimId, `task ${r.id} runs on ${nameOf(r.nodeId)}`);

    const egress = relay!.sent() - before;
    t.diagnostic(`registry egress ${egress} bytes for an image of ${imageSize} bytes: ${(egress / imageSize).toFixed(3)} × S`);
    assert.ok(egress <= 1.1 * imageSize, `the registry sent ${egress} bytes, more than 1.1 × ${imageSize}`);
    const [job] = await jobs();
    assert.ok(job !== undefined);
    t.diagnostic(`job: ${JSON.stringify(job.nodes.map((n) => ({ node: nameOf(n.nodeId), role: n.role, state: n.state, peers: n.bytesFromPeers, registry: n.bytesFromRegistry })))}`);
    for (const n of job.nodes) assert.ok(zoneA.includes(n.nodeId), `the job has node ${nameOf(n.nodeId)} outside zone a`);
    assert.ok(job.nodes.some((n) => n.role === "peer" && n.bytesFromPeers > 0), "peers fetched from peers");

    // Zone b: no piece of the image, no word of the job.
    for (const name of zoneB) {
      const w = workers.get(name)!;
      assert.deepEqual(filesContaining(w.dataDir, Buffer.from(bigLayer.digest.slice("sha256:".length))), [], `${name} holds the big layer`);
      assert.ok(!readFileSync(w.logFile, "utf8").includes(job.jobId), `${name}'s log names the job`);
    }

    // The registry login: on no worker's disk, in no node's log (the managers hold it sealed).
    for (const n of cluster.nodes.values()) {
      for (const needle of [user.password, basic]) {
        assert.ok(!readFileSync(n.logFile, "utf8").includes(needle), `${n.name}'s log holds the registry login`);
        assert.deepEqual(filesContaining(n.dataDir, Buffer.from(needle)), [], `${n.name}'s disk holds the registry login in the clear`);
      }
    }
  });
});

