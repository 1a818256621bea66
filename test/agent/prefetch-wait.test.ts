// A task's image waits for its prefetch job (prefetch-wait.ts). With real parts — a PrefetchRunner
// fetching from a mutual-TLS peer (p2p-fixture), the RegistryImageProvider on the same content
// store, an in-process registry that records every request: the wait holds until the order comes,
// shows the job's progress, and then the rootfs is built from local content with no registry
// request; with no order it pulls from the registry itself after the wait; when the session says
// the leader plans no prefetch it does not wait at all. With scripted jobs on a manual clock:
// progress at most once per interval (the latest shown), a failed job and a missing order fall
// back, a withdrawn order opens a new wait, an image already held and a stopped task do not wait.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { ManualClock, systemClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { SeededRandom } from "../../src/base/random.js";
import { createRootCA, signGrant, type RootCA } from "../../src/ca/index.js";
import type { ImageConfig, ImageProvider } from "../../src/agent/executor/executor.js";
import { RegistryImageProvider } from "../../src/agent/images/image-provider.js";
import { PrefetchRunner, type PrefetchJobState } from "../../src/agent/prefetch-runner.js";
import { ORDER_WAIT_MS, PROGRESS_INTERVAL_MS, PrefetchWaitingImages, formatBytes, type PrefetchJobs } from "../../src/agent/prefetch-wait.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";
import { startFakeRegistry, type FakeImage, type FakeRegistry } from "../oci/fake-registry.js";
import { buildTarGz } from "../oci/tar-writer.js";
import { startPeerNode, type PeerNode } from "./p2p-fixture.js";

const PIECE_SIZE = 128 * 1024;
const ZONE = "a";
const GUARD_MS = 45_000;
const silent = pino({ level: "silent" });
const PROGRESS = /^prefetching image: [\d.]+( (B|[KM]iB))? of [\d.]+ (B|[KM]iB) \(peers [\d.]+ (B|[KM]iB), registry [\d.]+ (B|[KM]iB)\)$/;

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** `promise`, or a failure once `ms` passed (a liveness guard). */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

/** Bytes gzip cannot shrink much (a fixed LCG), so the layer stays about `size` long. */
function noise(size: number): Buffer {
  const out = Buffer.alloc(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

describe("with a real runner, peer, content store and registry", () => {
  let root: RootCA;
  const clusterId = newId();
  let dir: string;
  let registry: FakeRegistry;
  let image: FakeImage;
  let blobs: Buffer[];
  let holder: PeerNode;
  const nodes: PeerNode[] = [];

  before(async () => {
    root = await createRootCA({ clock: systemClock });
    dir = await mkdtemp(join(tmpdir(), "shoal-prefetch-wait-"));
    registry = await startFakeRegistry();
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["sh"], Env: ["PATH=/bin"] }, rootfs: { type: "layers", diff_ids: [] } }));
    const layer = buildTarGz([{ path: "data/noise.bin", content: noise(1024 * 1024 + 4321) }, { path: "hello.txt", content: "from the prefetch" }]);
    blobs = [config, layer];
    image = registry.addImage("app", { config, layers: [layer], tag: "1" });
    // Limited upload, so the job lasts long enough to show progress (nothing measures its speed).
    holder = await startPeerNode({ root, clusterId, zone: ZONE, dir: join(dir, "holder"), logger: silent, pieceSize: PIECE_SIZE, server: { uploadBytesPerSec: 1024 * 1024 } });
    nodes.push(holder);
    for (const [i, b] of blobs.entries()) await holder.store.ensure([image.config, ...image.layers][i]!.digest, b.length, async () => once(b), "blob");
  });

  after(async () => {
    for (const n of nodes) {
      n.client.close();
      n.peer.close();
      await n.server.shutdown(0);
    }
    await registry?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function waiter(name: string, opts: { enabled: boolean; orderWaitMs?: number }) {
    const node = await startPeerNode({ root, clusterId, zone: ZONE, dir: join(dir, name), logger: silent, pieceSize: PIECE_SIZE });
    nodes.push(node);
    const provider = new RegistryImageProvider({ store: node.store, client: new RegistryClient({ idleTimeoutMs: 5000 }) });
    const runner = new PrefetchRunner({
      sink: node.pieces,
      storeManifest: async (d, bytes) => void (await node.store.ensure(d, bytes.length, async () => once(bytes), "manifest")),
      peer: node.client,
      clock: systemClock,
      random: new SeededRandom(5),
      logger: silent,
      report: () => undefined,
    });
    const images = new PrefetchWaitingImages({
      images: provider,
      jobs: runner,
      enabled: () => opts.enabled,
      holds: (d) => provider.holds(d),
      clock: systemClock,
      logger: silent,
      ...(opts.orderWaitMs !== undefined ? { orderWaitMs: opts.orderWaitMs } : {}),
    });
    const order = PrefetchOrder.fromPartial({
      jobId: `svc.1.${name}`,
      image: image.reference,
      manifestDigest: image.digest,
      manifest: image.manifest,
      blobs: [image.config, ...image.layers].map((d, i) => ({
        digest: d.digest,
        size: BigInt(d.size),
        pieceSize: PIECE_SIZE,
        pieceHashes: Array.from({ length: Math.ceil(d.size / PIECE_SIZE) }, (_, p) => sha256(blobs[i]!.subarray(p * PIECE_SIZE, (p + 1) * PIECE_SIZE))),
      })),
      candidates: [{ nodeId: holder.nodeId, addr: holder.addr }],
      grants: [image.config, ...image.layers].map((d) => ({
        blobDigest: d.digest,
        grant: signGrant(root, { jobId: `svc.1.${name}`, clusterId, zone: ZONE, nodeId: node.nodeId, blobDigest: d.digest, expiresAtMs: Date.now() + 5 * 60_000 }),
      })),
    });
    return { node, runner, images, order, rootfsDir: join(dir, name, "tasks", "t1", "rootfs") };
  }

  test("the task waits for its order and the job's end, shows progress, and the rootfs comes from local content with no registry request", { timeout: 60_000 }, async () => {
    const w = await waiter("waits", { enabled: true });
    const messages: string[] = [];
    let settled = false;
    const before = registry.requests.length;
    const prepared = w.images.prepareRootfs({ image: `${image.reference}:1`, digest: image.digest, rootfsDir: w.rootfsDir, progress: (m) => messages.push(m) }).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(settled, false, "no order yet: still waiting");
    w.runner.sync(new Map([[w.order.jobId, w.order]]));
    const config: ImageConfig = await prepared;
    assert.deepEqual(config.cmd, ["sh"]);
    assert.equal(readFileSync(join(w.rootfsDir, "hello.txt"), "utf8"), "from the prefetch");
    assert.deepEqual(registry.requests.slice(before), [], "nothing was asked of the registry");
    assert.ok(messages.length >= 1, "the job's progress was shown");
    for (const m of messages) assert.match(m, PROGRESS);
    assert.equal(w.runner.jobFor(image.digest)?.ended?.kind, "done");
    await w.runner.close();
  });

  test("no order in time: the task pulls the image from the registry itself", { timeout: 60_000 }, async () => {
    const w = await waiter("no-order", { enabled: true, orderWaitMs: 300 });
    const messages: string[] = [];
    const before = registry.requests.length;
    await w.images.prepareRootfs({ image: `${image.reference}:1`, digest: image.digest, rootfsDir: w.rootfsDir, progress: (m) => messages.push(m) });
    assert.equal(readFileSync(join(w.rootfsDir, "hello.txt"), "utf8"), "from the prefetch");
    assert.ok(registry.requests.slice(before).some((r) => r.startsWith("GET /v2/app/blobs/")), "the layers came from the registry");
    assert.deepEqual(messages, ["pulling image from the registry (no prefetch order for it within 0 s)"]);
    await w.runner.close();
  });

  test("the session plans no prefetch: the task does not wait at all", { timeout: 60_000 }, async () => {
    // Waiting for an order would take a minute; the liveness guard below is well under it.
    const w = await waiter("disabled", { enabled: false, orderWaitMs: 60_000 });
    const before = registry.requests.length;
    await within(30_000, w.images.prepareRootfs({ image: `${image.reference}:1`, digest: image.digest, rootfsDir: w.rootfsDir }));
    assert.ok(registry.requests.slice(before).some((r) => r.startsWith("GET /v2/app/blobs/")));
    // The image is whole here now: even with prefetch planned, a second task waits for nothing.
    const again = new PrefetchWaitingImages({
      images: new RegistryImageProvider({ store: w.node.store, client: new RegistryClient() }),
      jobs: w.runner,
      enabled: () => true,
      holds: (d) => new RegistryImageProvider({ store: w.node.store, client: new RegistryClient() }).holds(d),
      clock: systemClock,
      logger: silent,
      orderWaitMs: 60_000,
    });
    const count = registry.requests.length;
    await again.prepareRootfs({ image: `${image.reference}:1`, digest: image.digest, rootfsDir: join(dir, "disabled", "tasks", "t2", "rootfs") });
    assert.equal(registry.requests.length, count, "built from the content store alone");
    await w.runner.close();
  });
});

/** Jobs the test moves by hand. */
class ScriptedJobs implements PrefetchJobs {
  private readonly states = new Map<string, PrefetchJobState>();
  private readonly listeners = new Set<() => void>();
  jobFor(digest: string): PrefetchJobState | undefined {
    return this.states.get(digest);
  }
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  get subscribers(): number {
    return this.listeners.size;
  }
  set(digest: string, state: Partial<PrefetchJobState> | undefined): void {
    if (state === undefined) this.states.delete(digest);
    else this.states.set(digest, { jobId: "j", manifestDigest: digest, totalBytes: 64 * 1024 * 1024, heldBytes: 0, fromPeers: 0, fromRegistry: 0, ...state });
    for (const l of [...this.listeners]) l();
  }
}

const DIGEST = `sha256:${"c".repeat(64)}`;

function scripted(opts: { enabled?: boolean; holds?: boolean } = {}) {
  const clock = new ManualClock(1_000_000);
  const jobs = new ScriptedJobs();
  const built: string[] = [];
  const inner: ImageProvider = {
    prepareRootfs: async ({ digest }) => {
      built.push(digest);
      return { entrypoint: [], cmd: [], env: [], workingDir: "", user: "" };
    },
  };
  const images = new PrefetchWaitingImages({ images: inner, jobs, enabled: () => opts.enabled ?? true, holds: async () => opts.holds ?? false, clock, logger: silent });
  const messages: string[] = [];
  const abort = new AbortController();
  let outcome: "pending" | "built" | Error = "pending";
  const start = (): Promise<void> =>
    images.prepareRootfs({ image: "r.example/app", digest: DIGEST, rootfsDir: "/nonexistent", progress: (m) => messages.push(m), signal: abort.signal }).then(
      () => void (outcome = "built"),
      (err: Error) => void (outcome = err),
    );
  return { clock, jobs, built, messages, abort, start, outcome: () => outcome };
}

/** Lets the wait's promise callbacks run (its first step awaits `holds`). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("with scripted jobs on a manual clock", () => {
  test("progress shows at most once per interval, the latest state when the interval is over; done builds the rootfs", async () => {
    const s = scripted();
    const done = s.start();
    await settle();
    s.jobs.set(DIGEST, { heldBytes: 8 * 1024 * 1024, fromPeers: 8 * 1024 * 1024 });
    s.clock.advance(0);
    assert.deepEqual(s.messages, ["prefetching image: 8 of 64 MiB (peers 8 MiB, registry 0 B)"]);
    s.jobs.set(DIGEST, { heldBytes: 16 * 1024 * 1024, fromPeers: 12 * 1024 * 1024, fromRegistry: 4 * 1024 * 1024 });
    s.jobs.set(DIGEST, { heldBytes: 40 * 1024 * 1024, fromPeers: 32 * 1024 * 1024, fromRegistry: 8 * 1024 * 1024 });
    s.clock.advance(PROGRESS_INTERVAL_MS - 1);
    assert.equal(s.messages.length, 1, "not before the interval is over");
    s.clock.advance(1);
    assert.deepEqual(s.messages.slice(1), ["prefetching image: 40 of 64 MiB (peers 32 MiB, registry 8 MiB)"], "only the latest of the two");
    assert.deepEqual(s.built, []);
    s.jobs.set(DIGEST, { heldBytes: 64 * 1024 * 1024, ended: { kind: "done" } });
    await done;
    assert.equal(s.outcome(), "built");
    assert.deepEqual(s.built, [DIGEST]);
    assert.equal(s.jobs.subscribers, 0, "the wait stopped listening");
    assert.equal(s.clock.pendingTimers, 0, "and left no timer");
  });

  test("no order within ORDER_WAIT_MS: the task pulls the image itself, and says so", async () => {
    const s = scripted();
    const done = s.start();
    await settle();
    s.clock.advance(ORDER_WAIT_MS - 1);
    await settle();
    assert.equal(s.outcome(), "pending");
    s.clock.advance(1);
    await done;
    assert.equal(s.outcome(), "built");
    assert.deepEqual(s.messages, ["pulling image from the registry (no prefetch order for it within 10 s)"]);
  });

  test("a job that fails here: the task pulls the image itself at once", async () => {
    const s = scripted();
    const done = s.start();
    await settle();
    s.jobs.set(DIGEST, { heldBytes: 1024 });
    s.jobs.set(DIGEST, { ended: { kind: "failed", code: "PREFETCH_NO_SOURCE", message: "no peer had piece 3" } });
    await done;
    assert.equal(s.outcome(), "built");
    assert.equal(s.messages.at(-1), "pulling image from the registry (its prefetch job failed: PREFETCH_NO_SOURCE)");
  });

  test("an order withdrawn while it runs opens a new wait; one that comes back in time is waited for", async () => {
    const s = scripted();
    const done = s.start();
    await settle();
    s.clock.advance(ORDER_WAIT_MS - 100);
    s.jobs.set(DIGEST, { heldBytes: 1024 });
    s.jobs.set(DIGEST, undefined); // a failover: the new leader's complete set comes before it rebuilt the job
    s.clock.advance(ORDER_WAIT_MS - 1);
    await settle();
    assert.equal(s.outcome(), "pending", "a new wait of ORDER_WAIT_MS started when the order went");
    s.jobs.set(DIGEST, { heldBytes: 2048 });
    s.clock.advance(ORDER_WAIT_MS * 3);
    await settle();
    assert.equal(s.outcome(), "pending", "a running job is waited for as long as it runs");
    s.jobs.set(DIGEST, { ended: { kind: "done" } });
    await done;
    assert.equal(s.outcome(), "built");
  });

  test("no wait when the session plans no prefetch or the image is already held; a stopped task gives up", async () => {
    for (const opts of [{ enabled: false }, { holds: true }]) {
      const s = scripted(opts);
      await s.start();
      assert.equal(s.outcome(), "built", JSON.stringify(opts));
      assert.equal(s.clock.pendingTimers, 0);
      assert.deepEqual(s.messages, []);
    }
    const s = scripted();
    const done = s.start();
    await settle();
    s.abort.abort();
    await done;
    const outcome = s.outcome();
    assert.ok(outcome instanceof Error && isShoalError(outcome, "UNAVAILABLE"), String(outcome));
    assert.deepEqual(s.built, [], "nothing was pulled for a stopped task");
    assert.equal(s.jobs.subscribers, 0);
  });

  test("sizes read the way PREPARING messages show them", () => {
    assert.equal(formatBytes(0), "0 B");
    assert.equal(formatBytes(1000), "1000 B");
    assert.equal(formatBytes(512 * 1024), "512 KiB");
    assert.equal(formatBytes(3.5 * 1024 * 1024), "3.5 MiB");
    assert.equal(formatBytes(4 * 1024 * 1024), "4 MiB");
    assert.equal(formatBytes(40.4 * 1024 * 1024), "40 MiB");
  });
});
