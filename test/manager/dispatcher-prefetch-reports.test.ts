// ReportPrefetch over real mutual TLS, one in-process manager: the agent's PrefetchReporter brings a
// seed's piece hashes (thousands, in several calls), its byte totals and its end to the leader's
// board; a peer's bad-peer report is taken. Refused, each with its stable code and nothing handed
// on: piece hashes from a node that is not a seed (PERMISSION_DENIED, a security event), a report
// for a job the node has no order of (NOT_FOUND), a hash that is not sha256, a piece the blob does
// not have, a bad peer the node was never told to ask (INVALID_ARGUMENT), another node's session.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { PrefetchReporter } from "../../src/agent/prefetch-reporter.js";
import type { AcceptedReport } from "../../src/manager/prefetch/order-board.js";
import { DispatcherClient, PrefetchOrder, PrefetchOutcome, ReportPrefetchRequest } from "../../src/proto/shoal/v1/dispatcher.js";
import { unaryCall } from "../../src/transport/client.js";
import { waitFor } from "../e2e/cluster.js";
import { ARRIVAL_GUARD_MS, connect, loggedManager, zonedWorker, type WorkerLink } from "./dispatcher-fixture.js";
import { refusedWith } from "./single-manager.js";

const BLOB = `sha256:${"cd".repeat(32)}`;
const PIECES = 5000;
const hashOf = (i: number): string => `sha256:${i.toString(16).padStart(64, "0")}`;

function order(jobId: string, extra: Partial<PrefetchOrder> = {}): PrefetchOrder {
  return PrefetchOrder.fromPartial({ jobId, image: "127.0.0.1:5000/team/app", manifestDigest: `sha256:${"ab".repeat(32)}`, blobs: [{ digest: BLOB, size: BigInt(PIECES * 4), pieceSize: 4, pieceHashes: [] }], ...extra });
}

function reportAs(link: WorkerLink, req: Partial<ReportPrefetchRequest>): Promise<unknown> {
  const full = ReportPrefetchRequest.fromPartial({ sessionId: link.sessionId, ...req });
  return unaryCall((cb) => link.ch.client(DispatcherClient).reportPrefetch(full, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, cb));
}

test("a seed's piece hashes, totals and end reach the leader; reports a node may not send are refused with stable codes", { timeout: 120_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dpreport-");
  const seed = await zonedWorker(m, "s", "a");
  const peer = await zonedWorker(m, "p", "a");
  const other = await zonedWorker(m, "o", "a");
  const ls = await connect(m, seed);
  const lp = await connect(m, peer);
  const lo = await connect(m, other);
  t.after(() => [ls, lp, lo].forEach((l) => l.close()));
  m.prefetch.publish("j1", [
    { nodeId: seed.nodeId, zone: "a", order: order("j1", { seed: true }) },
    { nodeId: peer.nodeId, zone: "a", order: order("j1", { candidates: [{ nodeId: seed.nodeId, addr: "127.0.0.1:7001" }] }) },
  ]);
  const accepted: AcceptedReport[] = [];
  m.prefetch.onReport((r) => accepted.push(r));

  // The seed's reporter, over its real session.
  const reporter = new PrefetchReporter({ clock: systemClock, logger: pino({ level: "silent" }) });
  t.after(() => reporter.stop());
  reporter.connected({ sessionId: ls.sessionId, addr: m.addr, dispatcher: ls.ch.client(DispatcherClient) });
  for (let i = 0; i < PIECES; i++) reporter.report({ kind: "piece-hash", jobId: "j1", digest: BLOB, index: i, hash: hashOf(i) });
  reporter.report({ kind: "progress", jobId: "j1", progress: { digest: BLOB, piecesDone: PIECES, pieceCount: PIECES, bytesFromPeers: 0, bytesFromOrigin: PIECES * 4 } });
  reporter.report({ kind: "done", jobId: "j1", bytesFromPeers: 0, bytesFromRegistry: PIECES * 4 });
  await waitFor("the seed's end at the leader", () => accepted.some((r) => r.nodeId === seed.nodeId && r.report.outcome === PrefetchOutcome.PREFETCH_OUTCOME_DONE), ARRIVAL_GUARD_MS);
  const fromSeed = accepted.filter((r) => r.nodeId === seed.nodeId);
  const hashes = new Map(fromSeed.flatMap((r) => r.report.pieceHashes.map((h) => [h.index, h.hash] as const)));
  assert.equal(hashes.size, PIECES, "every piece hash reached the leader");
  assert.ok([...hashes].every(([i, h]) => h === hashOf(i)));
  assert.ok(fromSeed.length >= 3, `the hashes went in several calls (${fromSeed.length})`);
  assert.ok(fromSeed.every((r) => r.report.pieceHashes.length <= 2048 && r.zone === "a"));
  const last = fromSeed.at(-1)!;
  assert.equal(last.report.outcome, PrefetchOutcome.PREFETCH_OUTCOME_DONE, "the end comes with the last call");
  assert.equal(last.report.bytesFromRegistry, BigInt(PIECES * 4));
  // The leader saw the end before the reporter's call returned: wait for the reporter to settle it.
  await waitFor("the reporter to settle the job", () => reporter.pendingJobs === 0, ARRIVAL_GUARD_MS);

  // A peer reports the seed as bad: taken.
  await reportAs(lp, { jobId: "j1", badPeers: [{ blobDigest: BLOB, nodeId: seed.nodeId, piece: 7, reason: "piece 7 did not match its hash" }] });
  assert.equal(accepted.at(-1)!.nodeId, peer.nodeId);
  assert.equal(accepted.at(-1)!.report.badPeers[0]!.nodeId, seed.nodeId);

  const count = accepted.length;
  await refusedWith(reportAs(lp, { jobId: "j1", pieceHashes: [{ blobDigest: BLOB, index: 0, hash: hashOf(99) }] }), "PERMISSION_DENIED", /only seeds publish piece hashes/);
  assert.ok(m.logLines.some((l) => l.includes('"event":"security"') && l.includes(peer.nodeId) && l.includes("piece-hashes-from-non-seed")));
  await refusedWith(reportAs(lo, { jobId: "j1" }), "NOT_FOUND", /has no order of prefetch job j1/);
  await refusedWith(reportAs(ls, { jobId: "j1", pieceHashes: [{ blobDigest: BLOB, index: 0, hash: "md5:1234" }] }), "INVALID_ARGUMENT", /not sha256/);
  await refusedWith(reportAs(ls, { jobId: "j1", pieceHashes: [{ blobDigest: BLOB, index: PIECES, hash: hashOf(1) }] }), "INVALID_ARGUMENT", new RegExp(`has ${PIECES} pieces`));
  await refusedWith(reportAs(ls, { jobId: "j1", pieceHashes: [{ blobDigest: `sha256:${"ee".repeat(32)}`, index: 0, hash: hashOf(1) }] }), "INVALID_ARGUMENT", /not part of prefetch job/);
  await refusedWith(reportAs(lp, { jobId: "j1", badPeers: [{ blobDigest: BLOB, nodeId: other.nodeId, piece: 1, reason: "x" }] }), "INVALID_ARGUMENT", /not a peer this node was told to ask/);
  await refusedWith(reportAs(ls, { jobId: "j1", outcome: PrefetchOutcome.PREFETCH_OUTCOME_FAILED, failureCode: "lower case" }), "INVALID_ARGUMENT", /failure_code/);
  await refusedWith(reportAs(ls, { jobId: "" }), "INVALID_ARGUMENT", /job_id is empty/);
  await refusedWith(reportAs(ls, { jobId: "j1", sessionId: lp.sessionId }), "PERMISSION_DENIED");
  assert.equal(accepted.length, count, "nothing refused reached the board");

  // Withdrawn: the seed's later reports are NOT_FOUND, and its reporter drops them instead of retrying forever.
  m.prefetch.withdraw("j1");
  await refusedWith(reportAs(ls, { jobId: "j1" }), "NOT_FOUND");
  reporter.report({ kind: "progress", jobId: "j1", progress: { digest: BLOB, piecesDone: 1, pieceCount: PIECES, bytesFromPeers: 0, bytesFromOrigin: 4 } });
  await waitFor("the reporter to drop the withdrawn job", () => reporter.pendingJobs === 0, ARRIVAL_GUARD_MS);
  assert.equal(accepted.length, count);
});
