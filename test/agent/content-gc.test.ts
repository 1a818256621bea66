// The content store's GC over a size cap (`shoal daemon --content-max-bytes`, issue 10), over a real
// ContentStore in a temp dir: nothing goes under the cap or with cap 0; over it, unreferenced
// blobs go least recently used first until the store is at or under the cap; blobs of images in
// use, of prefetch orders and pinned or downloading ones stay; when those alone are over the cap
// a warning says so once per run. The piece store stops serving a removed blob with NOT_FOUND.
// Debouncing runs on a ManualClock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { ContentGc, type GcRoots } from "../../src/agent/images/content-gc.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { PieceStore } from "../../src/agent/images/piece-store.js";
import { MEDIA_TYPES } from "../../src/oci/manifest.js";
import { sha256Digest } from "../../src/oci/digest.js";

const T0 = 1_700_000_000_000;

interface Logged {
  level: number;
  msg: string;
  digest?: string;
  bytes?: number;
}

function capture(): { logger: pino.Logger; lines: Logged[] } {
  const lines: Logged[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim() !== "") lines.push(JSON.parse(line) as Logged);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, sink), lines };
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

async function withStore(fn: (store: ContentStore, clock: ManualClock, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "shoal-content-gc-"));
  try {
    const clock = new ManualClock(T0);
    const store = new ContentStore(join(dir, "content"), { clock });
    await store.open();
    await fn(store, clock, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Stores `bytes`, used at the clock's time now; returns its digest. */
async function put(store: ContentStore, bytes: Buffer): Promise<string> {
  const digest = sha256Digest(bytes);
  await store.ensure(digest, bytes.length, async () => once(bytes), "test blob");
  return digest;
}

function blob(n: number, size: number): Buffer {
  return Buffer.alloc(size, n);
}

/** A manifest over `config` and `layers` (stored blobs), stored too; returns its digest and bytes. */
async function putManifest(store: ContentStore, config: { digest: string; size: number }, layers: Array<{ digest: string; size: number }>): Promise<{ digest: string; bytes: Buffer }> {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, ...config },
      layers: layers.map((l) => ({ mediaType: MEDIA_TYPES.ociLayer, ...l })),
    }),
  );
  return { digest: await put(store, bytes), bytes };
}

async function present(store: ContentStore): Promise<Set<string>> {
  return new Set(await store.list());
}

async function totalBytes(store: ContentStore): Promise<number> {
  return (await store.inventory()).reduce((s, b) => s + b.size, 0);
}

function gc(store: ContentStore, clock: ManualClock, maxBytes: number, roots: () => GcRoots = () => ({ images: [] }), extra: { pieces?: PieceStore; logger?: pino.Logger; minIntervalMs?: number } = {}): ContentGc {
  return new ContentGc({ store, maxBytes, roots, clock, logger: extra.logger ?? pino({ level: "silent" }), ...(extra.pieces ? { pieces: extra.pieces } : {}), ...(extra.minIntervalMs !== undefined ? { minIntervalMs: extra.minIntervalMs } : {}) });
}

test("under the cap nothing is removed, at the cap neither, and cap 0 never removes anything", async () => {
  await withStore(async (store, clock) => {
    for (let i = 0; i < 4; i++) {
      await put(store, blob(i, 1000));
      clock.advance(1000);
    }
    const before = await present(store);
    assert.equal(before.size, 4);
    assert.deepEqual((await gc(store, clock, 10_000).run()).removed, []);
    assert.deepEqual((await gc(store, clock, 4000).run()).removed, [], "exactly at the cap is not over it");
    const none = gc(store, clock, 0);
    assert.deepEqual((await none.run()).removed, []);
    none.request();
    assert.equal(clock.pendingTimers, 0, "a cap of 0 schedules no run");
    assert.deepEqual(await present(store), before);
  });
});

test("over the cap unreferenced blobs go least recently used first, only until the store is at or under the cap", async () => {
  await withStore(async (store, clock) => {
    const { logger, lines } = capture();
    const a = await put(store, blob(1, 1000)); // oldest
    clock.advance(1000);
    const b = await put(store, blob(2, 1000));
    clock.advance(1000);
    const c = await put(store, blob(3, 1000));
    clock.advance(1000);
    const d = await put(store, blob(4, 1000)); // newest
    clock.advance(1000);
    // `a` is used again (found by ensure: a rootfs build or a pull that found it): now the newest.
    await put(store, blob(1, 1000));
    const result = await gc(store, clock, 2500, undefined, { logger }).run();
    assert.deepEqual(result.removed, [
      { digest: b, bytes: 1000 },
      { digest: c, bytes: 1000 },
    ]);
    assert.equal(result.totalBytes, 2000);
    assert.equal(result.overCap, false);
    assert.deepEqual(await present(store), new Set([a, d]));
    assert.equal(await totalBytes(store), 2000);
    const removedLogs = lines.filter((l) => l.level === 30 && l.digest !== undefined);
    assert.deepEqual(
      removedLogs.map((l) => [l.digest, l.bytes]),
      [
        [b, 1000],
        [c, 1000],
      ],
    );
    assert.equal(lines.filter((l) => l.level === 40).length, 0, "no warning when the store gets under the cap");
  });
});

test("after a restart (nothing in memory) the files' mtime orders the blobs", async () => {
  await withStore(async (store, clock, dir) => {
    const x = await put(store, blob(1, 1000));
    const y = await put(store, blob(2, 1000));
    const z = await put(store, blob(3, 1000));
    // As if written long ago in this order: y, then z, then x.
    await utimes(store.pathOf(y), new Date(T0 - 30_000), new Date(T0 - 30_000));
    await utimes(store.pathOf(z), new Date(T0 - 20_000), new Date(T0 - 20_000));
    await utimes(store.pathOf(x), new Date(T0 - 10_000), new Date(T0 - 10_000));
    const restarted = new ContentStore(join(dir, "content"), { clock });
    await restarted.open();
    const result = await gc(restarted, clock, 1000).run();
    assert.deepEqual(
      result.removed.map((r) => r.digest),
      [y, z],
    );
    assert.deepEqual(await present(restarted), new Set([x]));
  });
});

test("blobs of images in use, of prefetch orders, pinned ones and their manifests stay; others go even when newer", async () => {
  await withStore(async (store, clock) => {
    // The image a task uses: manifest, config and two layers; stored first, so the oldest.
    const cfg = blob(10, 100);
    const l1 = blob(11, 1000);
    const l2 = blob(12, 1000);
    const cfgD = await put(store, cfg);
    const l1D = await put(store, l1);
    const l2D = await put(store, l2);
    const image = await putManifest(store, { digest: cfgD, size: 100 }, [
      { digest: l1D, size: 1000 },
      { digest: l2D, size: 1000 },
    ]);
    clock.advance(1000);
    // A prefetch order's image: its blob list and manifest bytes are roots (the manifest is not stored).
    const oLayer = await put(store, blob(20, 1000));
    const oCfg = await put(store, blob(21, 100));
    const orderManifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: oCfg, size: 100 },
        layers: [{ mediaType: MEDIA_TYPES.ociLayer, digest: oLayer, size: 1000 }],
      }),
    );
    const listedOnly = await put(store, blob(22, 1000));
    clock.advance(1000);
    // A pinned blob (a rootfs being built from it).
    const pinned = await put(store, blob(30, 1000));
    const release = store.use([pinned]);
    clock.advance(1000);
    // Unreferenced, and newer than all of the above.
    const free1 = await put(store, blob(40, 1000));
    const free2 = await put(store, blob(41, 1000));
    const roots: GcRoots = { images: [image.digest], blobs: [listedOnly], manifests: [orderManifest] };
    const result = await gc(store, clock, 1, () => roots).run();
    assert.deepEqual(new Set(result.removed.map((r) => r.digest)), new Set([free1, free2]));
    assert.equal(result.overCap, true);
    assert.deepEqual(await present(store), new Set([cfgD, l1D, l2D, image.digest, oLayer, oCfg, listedOnly, pinned]));
    // Unpinned, it goes at the next run.
    release();
    assert.deepEqual((await gc(store, clock, 1, () => roots).run()).removed.map((r) => r.digest), [pinned]);
  });
});

test("an index keeps its child manifests the store holds and their blobs", async () => {
  await withStore(async (store, clock) => {
    const cfgD = await put(store, blob(1, 100));
    const layerD = await put(store, blob(2, 1000));
    const child = await putManifest(store, { digest: cfgD, size: 100 }, [{ digest: layerD, size: 1000 }]);
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: child.digest, size: child.bytes.length, platform: { os: "linux", architecture: "amd64" } }] }));
    const indexD = await put(store, index);
    clock.advance(1000);
    const free = await put(store, blob(3, 1000));
    const result = await gc(store, clock, 1, () => ({ images: [indexD] })).run();
    assert.deepEqual(result.removed.map((r) => r.digest), [free]);
    assert.deepEqual(await present(store), new Set([indexD, child.digest, cfgD, layerD]));
  });
});

test("when the blobs in use alone exceed the cap, nothing in use is removed and one warning per run says the cap is too small", async () => {
  await withStore(async (store, clock) => {
    const { logger, lines } = capture();
    const used = [await put(store, blob(1, 1000)), await put(store, blob(2, 1000))];
    const free = await put(store, blob(3, 1000));
    const collector = gc(store, clock, 1500, () => ({ images: [], blobs: used }), { logger });
    const first = await collector.run();
    assert.deepEqual(first.removed.map((r) => r.digest), [free]);
    assert.equal(first.overCap, true);
    assert.equal(first.totalBytes, 2000);
    assert.deepEqual(await present(store), new Set(used));
    assert.equal(lines.filter((l) => l.level === 40).length, 1);
    assert.match(lines.find((l) => l.level === 40)!.msg, /cap is too small/);
    await collector.run();
    assert.equal(lines.filter((l) => l.level === 40).length, 2, "once per run");
    assert.deepEqual(await present(store), new Set(used));
  });
});

test("a blob being downloaded is not removed, and a blob being removed is not found by has until it is gone", async () => {
  await withStore(async (store, clock) => {
    const old = await put(store, blob(1, 1000));
    clock.advance(1000);
    // A second ensure of `old` is in flight (its source never ends until told): it is in use.
    let finish!: () => void;
    const gate = new Promise<void>((resolve) => (finish = resolve));
    const slow = blob(2, 1000);
    const slowD = sha256Digest(slow);
    const downloading = store.ensure(
      slowD,
      slow.length,
      async () =>
        (async function* () {
          await gate;
          yield slow;
        })(),
      "slow",
    );
    assert.equal(store.inUse(slowD), true);
    assert.equal(await store.remove(slowD), false, "a blob being downloaded is refused");
    const removing = store.remove(old);
    assert.equal(await store.has(old), false, "has waits for the removal");
    assert.equal(await removing, true);
    finish();
    await downloading;
    assert.equal(store.inUse(slowD), false);
    const pinned = store.use([slowD]);
    assert.equal(await store.remove(slowD), false, "a pinned blob is refused");
    pinned();
    pinned(); // idempotent
    assert.equal(await store.remove(slowD), true);
  });
});

test("the piece store serving a blob that GC removes answers NOT_FOUND, not a crash, and stops advertising it", async () => {
  await withStore(async (store, clock) => {
    const bytes = Buffer.alloc(10_000, 7);
    const digest = await put(store, bytes);
    const pieces = new PieceStore(store, { defaultPieceSize: 4096 });
    // Tracked by a job that finds it whole, and served to peers.
    assert.equal((await pieces.track(digest, bytes.length, 4096)).complete, true);
    assert.equal(pieces.held(digest)?.pieceCount, 3);
    assert.deepEqual(await pieces.readPiece(digest, 0), bytes.subarray(0, 4096));
    clock.advance(1000);
    const result = await gc(store, clock, 1, () => ({ images: [] }), { pieces }).run();
    assert.deepEqual(result.removed.map((r) => r.digest), [digest]);
    assert.equal(pieces.held(digest), undefined, "no longer advertised");
    await assert.rejects(pieces.readPiece(digest, 1), (e: unknown) => isShoalError(e, "NOT_FOUND"));

    // The same without the piece store being told (its record is stale): the read still fails cleanly.
    const again = await put(store, bytes);
    const stale = new PieceStore(store, { defaultPieceSize: 4096 });
    assert.ok(stale.held(again) !== undefined);
    assert.equal(await store.remove(again), true);
    await assert.rejects(stale.readPiece(again, 2), (e: unknown) => isShoalError(e, "NOT_FOUND"));
    assert.equal(stale.held(again), undefined, "a failed open forgets the blob");
  });
});

test("requests are debounced on the clock: one run at once, then at most one per interval, one more for requests during a run", async () => {
  await withStore(async (store, clock) => {
    const runs: number[] = [];
    const inventory = store.inventory.bind(store);
    store.inventory = async () => {
      runs.push(clock.nowMs());
      return inventory();
    };
    const collector = gc(store, clock, 1, () => ({ images: [] }), { minIntervalMs: 5000 });
    // Waits (in real time, bounded) until no run is under way.
    const settle = async (): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (collector.busy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2));
      assert.equal(collector.busy, false);
    };
    collector.request();
    collector.request();
    assert.equal(clock.pendingTimers, 1);
    clock.advance(0);
    assert.equal(collector.busy, true);
    await settle();
    assert.deepEqual(runs, [T0]);
    collector.request();
    collector.request();
    assert.equal(clock.pendingTimers, 1, "one run asked for");
    clock.advance(4999);
    assert.equal(collector.busy, false, "not before the interval has passed");
    assert.equal(runs.length, 1);
    clock.advance(1);
    assert.equal(collector.busy, true);
    // Asked for while this run is under way: one more run, an interval later.
    collector.request();
    collector.request();
    await settle();
    assert.deepEqual(runs, [T0, T0 + 5000]);
    assert.equal(clock.pendingTimers, 1);
    clock.advance(4999);
    assert.equal(collector.busy, false);
    clock.advance(1);
    await settle();
    assert.deepEqual(runs, [T0, T0 + 5000, T0 + 10_000]);
    assert.equal(clock.pendingTimers, 0, "nothing more was asked for");
    collector.request();
    collector.close();
    clock.advance(60_000);
    assert.equal(collector.busy, false);
    assert.equal(runs.length, 3, "closed: no more runs");
  });
});
