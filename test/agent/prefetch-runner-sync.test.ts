// PrefetchRunner.sync, as the agent calls it after every assignments change: a new order starts
// its job once, a job that ended is not started again while it stays ordered (every assignments
// change calls sync), and an order that comes back after it was withdrawn starts a new run.
// Orders with no blobs end as soon as their manifest is stored, so the test sees each run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { PrefetchRunner, type PrefetchReport, type PrefetchRunnerOptions } from "../../src/agent/prefetch-runner.js";
import { PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";
import { waitFor } from "../e2e/cluster.js";

const unused = (): never => {
  throw new Error("an order with no blobs fetches nothing");
};

test("a job runs once per order: sync after it ended does not start it again; a withdrawn and re-sent order does", { timeout: 30_000 }, async () => {
  const stored: string[] = [];
  const reports: PrefetchReport[] = [];
  const runner = new PrefetchRunner({
    sink: new Proxy({}, { get: unused }) as PrefetchRunnerOptions["sink"],
    peer: new Proxy({}, { get: unused }) as PrefetchRunnerOptions["peer"],
    storeManifest: async (digest) => void stored.push(digest),
    clock: systemClock,
    random: new SeededRandom(1),
    logger: pino({ level: "silent" }),
    report: (r) => reports.push(r),
  });
  const j1 = PrefetchOrder.fromPartial({ jobId: "j1", manifestDigest: "sha256:m1", image: "r/app" });
  const done = (): number => reports.filter((r) => r.kind === "done" && r.jobId === "j1").length;

  runner.sync(new Map([["j1", j1]]));
  await waitFor("j1 done", () => done() === 1, 10_000);
  for (let i = 0; i < 3; i++) runner.sync(new Map([["j1", j1]]));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done(), 1, "an ended job stays ended while it is ordered");
  assert.deepEqual(stored, ["sha256:m1"]);

  runner.sync(new Map());
  runner.sync(new Map([["j1", j1]]));
  await waitFor("j1 done again", () => done() === 2, 10_000);
  assert.deepEqual(stored, ["sha256:m1", "sha256:m1"]);
  await runner.close();
});

/** A runner for orders with no blobs: `storeManifest` is each run's one step. */
function blobless(storeManifest: (digest: string) => Promise<void> | undefined, reports: PrefetchReport[]): PrefetchRunner {
  return new PrefetchRunner({
    sink: new Proxy({}, { get: unused }) as PrefetchRunnerOptions["sink"],
    peer: new Proxy({}, { get: unused }) as PrefetchRunnerOptions["peer"],
    storeManifest: async (digest) => await storeManifest(digest),
    clock: systemClock,
    random: new SeededRandom(1),
    logger: pino({ level: "silent" }),
    report: (r) => reports.push(r),
  });
}

test("an order of a higher attempt runs the job again: once ended, and while running (the old run stops first and reports nothing)", { timeout: 30_000 }, async () => {
  const stored: string[] = [];
  const reports: PrefetchReport[] = [];
  let hold: Promise<void> | undefined;
  const runner = blobless((digest) => {
    stored.push(digest);
    return hold;
  }, reports);
  const order = (attempt: number) => PrefetchOrder.fromPartial({ jobId: "j1", manifestDigest: "sha256:m1", image: "r/app", attempt });
  const done = (): number => reports.filter((r) => r.kind === "done" && r.jobId === "j1").length;

  runner.sync(new Map([["j1", order(0)]]));
  await waitFor("j1 done", () => done() === 1, 10_000);
  runner.sync(new Map([["j1", order(0)]]));
  runner.sync(new Map([["j1", order(1)]]));
  await waitFor("j1 done at attempt 1", () => done() === 2, 10_000);
  assert.equal(stored.length, 2, "ended at attempt 0, run again at attempt 1");

  // Running at attempt 1 (held in its first step) when attempt 2 comes: that run stops, a new one runs.
  let release!: () => void;
  hold = new Promise((resolve) => (release = resolve));
  runner.sync(new Map());
  runner.sync(new Map([["j1", order(1)]]));
  await waitFor("the attempt-1 run started", () => stored.length === 3, 10_000);
  runner.sync(new Map([["j1", order(2)]]));
  hold = undefined;
  release();
  await waitFor("j1 done at attempt 2", () => done() === 3, 10_000);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(stored.length, 4, "the stopped run's job ran again");
  assert.equal(done(), 3, "the stopped run reported nothing");
  await runner.close();
});

test("a running job whose order changes role (a replan made the peer a seed) starts again in the new role", { timeout: 30_000 }, async () => {
  const stored: string[] = [];
  const reports: PrefetchReport[] = [];
  let release!: () => void;
  let hold: Promise<void> | undefined = new Promise((resolve) => (release = resolve));
  const runner = blobless((digest) => {
    stored.push(digest);
    return hold;
  }, reports);
  const order = (seed: boolean) => PrefetchOrder.fromPartial({ jobId: "j1", manifestDigest: "sha256:m1", image: "r/app", seed });
  runner.sync(new Map([["j1", order(false)]]));
  await waitFor("the peer run started", () => stored.length === 1, 10_000);
  runner.sync(new Map([["j1", order(true)]]));
  hold = undefined;
  release();
  await waitFor("the seed run done", () => reports.some((r) => r.kind === "done"), 10_000);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(stored.length, 2, "run again as a seed");
  assert.equal(reports.filter((r) => r.kind === "done").length, 1, "the stopped peer run reported nothing");
  await runner.close();
});
