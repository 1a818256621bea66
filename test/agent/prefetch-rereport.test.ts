// After a manager failover the new leader hears again how this node's prefetch jobs ended: the real
// Agent with a real PrefetchRunner (a real piece store and content store in a temp dir, a seed
// pulling from an in-process registry) against two scripted dispatchers over mutual TLS that share
// one store, as a new leader rebuilds the same job IDs. The first takes the seed's piece hashes and
// DONE, and another job's FAILED; once it is gone the second gets the same reports again (hashes
// first, then the end) without the jobs running again, and nothing for a job it no longer orders.
// The registry header the seed's order carried is in no log line.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { systemRandom } from "../../src/base/random.js";
import { Agent } from "../../src/agent/agent.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { PieceStore } from "../../src/agent/images/piece-store.js";
import { PrefetchRunner, type PrefetchRunnerOptions } from "../../src/agent/prefetch-runner.js";
import { PrefetchOrder, PrefetchOutcome, type ReportPrefetchRequest } from "../../src/proto/shoal/v1/dispatcher.js";
import { waitFor } from "../e2e/cluster.js";
import { startFakeRegistry } from "../oci/fake-registry.js";
import { makePki, type Pki } from "../transport/fixtures.js";
import { ScriptedDispatcher, ScriptedStore } from "./scripted-dispatcher.js";

/** A liveness guard only, far above the second or so this takes. */
const GUARD_MS = 45_000;
const PIECE_SIZE = 16 * 1024;
const TOKEN = "Bearer seed-token-7d1e0c";

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

function blobBytes(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * seed + (i >> 7)) & 0xff;
  return b;
}

function reportsOf(store: ScriptedStore, jobId: string, via: string): ReportPrefetchRequest[] {
  return store.prefetchReports.filter((r) => r.request.jobId === jobId && r.via === via).map((r) => r.request);
}

function endOf(store: ScriptedStore, jobId: string, via: string): ReportPrefetchRequest | undefined {
  return reportsOf(store, jobId, via).find((r) => r.outcome !== PrefetchOutcome.PREFETCH_OUTCOME_RUNNING);
}

function hashesOf(store: ScriptedStore, jobId: string, via: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of reportsOf(store, jobId, via)) for (const h of r.pieceHashes) out.set(`${h.blobDigest}#${h.index}`, h.hash);
  return out;
}

test("a new leader hears again how the jobs ended here (a seed's hashes, then DONE; FAILED with its code), and the jobs do not run again", { timeout: 120_000 }, async (t: TestContext) => {
  const pki: Pki = makePki();
  t.after(() => pki.cleanup());
  const registry = await startFakeRegistry({ auth: { scheme: "bearer", username: "u", password: "p" } });
  t.after(() => registry.stop());
  registry.tokens.set("app", TOKEN.slice("Bearer ".length));
  const layers = [blobBytes(3 * PIECE_SIZE + 100, 7), blobBytes(PIECE_SIZE, 13)];
  const image = registry.addImage("app", { config: Buffer.from('{"config":{}}'), layers });

  const root = mkdtempSync(join(tmpdir(), "shoal-prefetch-rereport-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const content = new ContentStore(join(root, "content"));
  await content.open();
  const pieces = new PieceStore(content, { defaultPieceSize: PIECE_SIZE });
  const manifestsStored: string[] = [];
  const logLines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });

  const store = new ScriptedStore();
  const dispatchers = [await ScriptedDispatcher.start(pki, store, "m1"), await ScriptedDispatcher.start(pki, store, "m2")];
  let agent: Agent | undefined;
  const runner = new PrefetchRunner({
    sink: pieces,
    storeManifest: async (digest, bytes) => {
      manifestsStored.push(digest);
      await content.ensure(digest, bytes.length, async () => once(bytes), "manifest");
    },
    peer: new Proxy({}, { get: () => assert.fail("a seed asks no peer") }) as PrefetchRunnerOptions["peer"],
    clock: systemClock,
    random: systemRandom,
    logger,
    report: (e) => agent?.reportPrefetch(e),
  });
  agent = new Agent({
    nodeId: pki.worker.nodeId,
    clusterId: pki.clusterId,
    rootCaPem: pki.ca.rootCaPem,
    managers: dispatchers.map((d) => d.addr),
    identity: () => ({ certPem: pki.worker.certPem, keyPem: pki.worker.keyPem }),
    advertiseAddr: "",
    hostname: "worker-1",
    clock: systemClock,
    random: systemRandom,
    logger,
    worker: { workerDir: join(root, "worker"), executors: [], secretsRoot: join(root, "secrets"), prefetch: runner },
    onRenewed: async () => undefined,
    onRemoved: () => undefined,
  });
  agent.start();
  t.after(async () => {
    await agent.stop();
    await runner.close();
    for (const d of dispatchers) await d.stop();
  });
  const first = await waitFor("the agent's assignments stream", () => dispatchers.find((d) => d.hasStream), GUARD_MS);
  const second = dispatchers.find((d) => d !== first)!;

  const blobs = [image.config, ...image.layers].map((b) => ({ digest: b.digest, size: BigInt(b.size), pieceSize: PIECE_SIZE, pieceHashes: [] }));
  const seed = PrefetchOrder.fromPartial({
    jobId: "svc.1.seed",
    image: image.reference,
    manifestDigest: image.digest,
    manifest: image.manifest,
    seed: true,
    blobs,
    originStartPieces: blobs.map(() => 0),
    registryAuthorization: TOKEN,
  });
  // Its manifest is not the digest's: the content store refuses it, so the job fails here.
  const failing = PrefetchOrder.fromPartial({ jobId: "svc.1.bad", image: image.reference, manifestDigest: `sha256:${"1".repeat(64)}`, manifest: image.manifest });
  const gone = PrefetchOrder.fromPartial({ jobId: "svc.1.gone", image: image.reference, manifestDigest: image.digest, manifest: image.manifest });
  first.order([seed, failing, gone]);

  await waitFor("both jobs' ends at the first manager", () => endOf(store, seed.jobId, first.name) && endOf(store, failing.jobId, first.name) && endOf(store, gone.jobId, first.name), GUARD_MS);
  const expected = new Map<string, string>();
  for (const [i, bytes] of [Buffer.from('{"config":{}}'), ...layers].entries()) {
    for (let p = 0; p * PIECE_SIZE < bytes.length; p++) expected.set(`${blobs[i]!.digest}#${p}`, sha256(bytes.subarray(p * PIECE_SIZE, (p + 1) * PIECE_SIZE)));
  }
  assert.deepEqual(hashesOf(store, seed.jobId, first.name), expected, "the seed reported every piece hash");
  assert.equal(endOf(store, seed.jobId, first.name)!.outcome, PrefetchOutcome.PREFETCH_OUTCOME_DONE);
  assert.equal(endOf(store, failing.jobId, first.name)!.failureCode, "DIGEST_MISMATCH");
  const pulls = registry.requests.filter((r) => r.includes("/blobs/")).length;
  const stored = manifestsStored.length;

  // The new leader rebuilt two of the jobs (same IDs); the third it no longer orders.
  store.prefetch.delete(gone.jobId);
  await first.stop();
  await waitFor("the end of the seed's job at the new manager", () => endOf(store, seed.jobId, second.name), GUARD_MS);
  await waitFor("the failed job's end at the new manager", () => endOf(store, failing.jobId, second.name), GUARD_MS);
  const seedEnd = endOf(store, seed.jobId, second.name)!;
  assert.equal(seedEnd.outcome, PrefetchOutcome.PREFETCH_OUTCOME_DONE);
  assert.equal(seedEnd.bytesFromRegistry, endOf(store, seed.jobId, first.name)!.bytesFromRegistry, "the same totals");
  assert.ok(seedEnd.bytesFromRegistry > 0n);
  assert.deepEqual(hashesOf(store, seed.jobId, second.name), expected, "the seed's hashes again, for a leader that lost them");
  const failedEnd = endOf(store, failing.jobId, second.name)!;
  assert.equal(failedEnd.outcome, PrefetchOutcome.PREFETCH_OUTCOME_FAILED);
  assert.equal(failedEnd.failureCode, "DIGEST_MISMATCH");
  assert.equal(reportsOf(store, gone.jobId, second.name).length, 0, "a job the new leader does not order is not reported to it");
  assert.equal(registry.requests.filter((r) => r.includes("/blobs/")).length, pulls, "the seed pulled nothing again");
  assert.equal(manifestsStored.length, stored, "no job ran again");
  assert.ok(!logLines.join("").includes("seed-token-7d1e0c"), "the registry header is never logged");
});
