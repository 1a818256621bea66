// A prefetch job end to end below the dispatcher: the manager's side (resolve the image with the
// login, the seed's scoped header from the token server, planPrefetch, buildOrders with grants
// signed by a real cluster CA) and five workers' PrefetchRunners over real mutual-TLS PeerServers
// with zone certificates — four in zone a, one in zone b — against a real token-auth registry. The
// test relays the seeds' piece hashes into every order, as the manager will. Asserts: every node
// holds the whole image and can build a rootfs from its content store with no registry login; per
// zone the registry sent the image once (its seed) and the other nodes got every byte from peers;
// the zone-b node served nothing and was asked nothing; only seeds' orders carried the header.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { SeededRandom } from "../../src/base/random.js";
import { createRootCA, type RootCA } from "../../src/ca/index.js";
import { RegistryImageProvider } from "../../src/agent/images/image-provider.js";
import { PrefetchRunner, type PrefetchReport } from "../../src/agent/prefetch-runner.js";
import { buildOrders } from "../../src/manager/prefetch/orders.js";
import { planPrefetch, type PlanNode } from "../../src/manager/prefetch/plan.js";
import { parseManifestOrIndex } from "../../src/oci/manifest.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { createImageResolver } from "../../src/oci/resolver.js";
import type { PrefetchBlob, PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";
import { startRegistry, startTokenServer, type LocalRegistry, type TokenServer } from "../../scripts/lib/registry.js";
import { buildTestImage, type TestImage } from "../../scripts/lib/test-image.js";
import { waitFor } from "../e2e/cluster.js";
import { startPeerNode, type PeerNode } from "./p2p-fixture.js";

const PIECE_SIZE = 256 * 1024;
const user = { username: "grace", password: "prefetch-pass-0b7e4" };
const logLines: string[] = [];
const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });

interface Worker extends PeerNode {
  runner: PrefetchRunner;
  reports: PrefetchReport[];
  order?: PrefetchOrder;
}

let root: RootCA;
const clusterId = newId();
let work: string;
let tokens: TokenServer;
let registry: LocalRegistry;
let image: TestImage;
const workers: Worker[] = [];

before(async () => {
  root = await createRootCA({ clock: systemClock });
  work = await mkdtemp(join(tmpdir(), "shoal-prefetch-runner-"));
  tokens = await startTokenServer({ users: [user] });
  registry = await startRegistry({ token: tokens });
  image = await buildTestImage({ registry: registry.host, name: "team/big", extraLayerBytes: 3 * 1024 * 1024 + 12345, credentials: user });
});

after(async () => {
  for (const w of workers) {
    await w.runner.close();
    w.client.close();
    w.peer.close();
    await w.server.shutdown(200);
  }
  await registry?.stop();
  await tokens?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

async function startWorker(name: string, zone: string, onReport: (w: Worker, r: PrefetchReport) => void): Promise<Worker> {
  const node = await startPeerNode({ root, clusterId, zone, dir: join(work, name), logger, pieceSize: PIECE_SIZE });
  const { store, pieces, client } = node;
  const reports: PrefetchReport[] = [];
  const worker = { ...node, reports } as Worker;
  const storeManifest = async (d: string, bytes: Buffer): Promise<void> => {
    await store.ensure(d, bytes.length, async () => (async function* () { yield bytes; })(), "a prefetch order's manifest");
  };
  worker.runner = new PrefetchRunner({ sink: pieces, storeManifest, peer: client, clock: systemClock, random: new SeededRandom(workers.length + 1), logger, haveRefreshMs: 50, pieceTimeoutMs: 10_000, report: (r) => onReport(worker, r) });
  workers.push(worker);
  return worker;
}

test("a prefetch job: per zone one registry copy from its seed, every other node from its zone's peers, only seeds hold the registry header", { timeout: 180_000 }, async () => {
  // ---- the manager's side ----
  const managerClient = new RegistryClient({ access: () => ({ credentials: user }) });
  const { digest } = await createImageResolver({ client: managerClient })(image.reference);
  const ref = parseImageReference(image.reference);
  const manifest = await managerClient.fetchManifest(ref, digest);
  const doc = parseManifestOrIndex(manifest.bytes, manifest.contentType, "test image");
  assert.equal(doc.kind, "manifest");
  if (doc.kind !== "manifest") return;
  const blobs: PrefetchBlob[] = [doc.config, ...doc.layers].map((d) => ({
    digest: d.digest,
    size: BigInt(d.size),
    pieceSize: PIECE_SIZE,
    pieceHashes: [],
  }));
  // Blob bytes only: the manifest travels in the order.
  const imageBytes = blobs.reduce((sum, b) => sum + Number(b.size), 0);
  const authorization = await managerClient.pullAuthorization(ref);
  assert.ok(authorization?.startsWith("Bearer "));

  // The manager's relay: a seed's piece hash is published into every order of the job.
  const published = new Map<string, string[]>();
  const relay = (_w: Worker, r: PrefetchReport): void => {
    if (r.kind !== "piece-hash") return;
    const hashes = published.get(r.digest) ?? [];
    hashes[r.index] = r.hash;
    published.set(r.digest, hashes);
    for (const w of workers) {
      if (w.order === undefined) continue;
      for (const b of w.order.blobs) if (b.digest === r.digest) b.pieceHashes = Array.from({ length: hashes.length }, (_, i) => hashes[i] ?? "");
      w.runner.apply(w.order);
    }
  };
  const record = (w: Worker, r: PrefetchReport): void => {
    w.reports.push(r);
    relay(w, r);
  };
  for (let i = 0; i < 4; i++) await startWorker(`a${i}`, "a", record);
  const zoneB = await startWorker("b0", "b", record);

  const targets: PlanNode[] = workers.map((w) => ({ nodeId: w.nodeId, zone: w.zone, addr: w.addr, revoked: false, down: false, excluded: false, load: 0 }));
  const plan = planPrefetch({ jobId: "job-1", targets, random: new SeededRandom(3) });
  const orders = buildOrders({
    jobId: "job-1",
    clusterId,
    image: `${ref.registry}/${ref.repository}`,
    manifestDigest: digest,
    manifest: manifest.bytes,
    blobs,
    plan,
    nodes: new Map(targets.map((t) => [t.nodeId, t])),
    grantSigner: root,
    nowMs: Date.now(),
    seedAccess: { authorization: authorization! },
  });
  assert.equal(orders.length, workers.length);
  for (const { nodeId, order } of orders) workers.find((w) => w.nodeId === nodeId)!.order = order;
  for (const w of workers) w.runner.apply(w.order!);

  // ---- every node finishes ----
  await waitFor(
    "every node to finish the job",
    () => workers.every((w) => w.reports.some((r) => r.kind === "done" || r.kind === "failed")),
    120_000,
  );
  const failed = workers.flatMap((w) => w.reports.filter((r) => r.kind === "failed"));
  assert.deepEqual(failed, []);
  const done = (w: Worker) => w.reports.find((r) => r.kind === "done") as Extract<PrefetchReport, { kind: "done" }>;
  for (const zone of ["a", "b"]) {
    const inZone = workers.filter((w) => w.zone === zone);
    const seeds = inZone.filter((w) => w.order!.seed);
    assert.equal(seeds.length, 1, `zone ${zone} has one seed`);
    assert.equal(inZone.reduce((s, w) => s + done(w).bytesFromRegistry, 0), imageBytes, `zone ${zone}: the registry sent the image once`);
    for (const w of inZone) {
      if (w.order!.seed) {
        assert.equal(w.order!.registryAuthorization, authorization);
        continue;
      }
      assert.equal(w.order!.registryAuthorization, "", "a node that is not a seed is never given the registry header");
      assert.equal(done(w).bytesFromRegistry, 0);
      assert.equal(done(w).bytesFromPeers, imageBytes);
      for (const c of w.order!.candidates) assert.equal(workers.find((x) => x.nodeId === c.nodeId)!.zone, zone);
    }
  }
  assert.equal(zoneB.peer.stats().bytesSent, 0, "the zone-b node served nothing to zone a");

  // ---- what each node holds is the image ----
  for (const w of workers) {
    for (const b of [digest, ...blobs.map((x) => x.digest)]) assert.ok(await w.store.has(b), `${w.zone} node lacks ${b}`);
    // No login at all: everything must come from the content store.
    const provider = new RegistryImageProvider({ store: w.store, client: new RegistryClient() });
    const rootfs = join(work, `rootfs-${w.nodeId}`);
    await provider.prepareRootfs({ image: image.reference, digest, rootfsDir: rootfs });
    assert.ok(existsSync(join(rootfs, "bin", "busybox")));
  }
  // The header is in no log line.
  assert.ok(!logLines.join("").includes(authorization!.slice(7)), "a log line carries the registry token");
  assert.ok(!logLines.join("").includes(user.password));
});
