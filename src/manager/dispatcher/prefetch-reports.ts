// ReportPrefetch (DESIGN.md §3 rule 9, §8): what a node says about its part in a prefetch job, and
// what the dispatcher refuses before the leader's prefetch loop sees it. A node reports only for a
// job it has an order of; only a seed reports piece hashes (the hashes every other node verifies
// pieces against, so a peer that could publish them could make the zone accept its own bytes); a
// hash is for a blob of the order and a piece of that blob; every string is bounded.
import { pieceCountOf } from "../../base/bitfield.js";
import { ShoalError } from "../../base/errors.js";
import { PrefetchOutcome, type ReportPrefetchRequest } from "../../proto/shoal/v1/dispatcher.js";
import type { BoardEntry } from "../prefetch/order-board.js";
import { checkReportedText, MAX_STATUS_MESSAGE_BYTES } from "./limits.js";

/** Piece hashes and bad peers in one ReportPrefetch call (the agent sends more calls beyond). */
export const MAX_PIECE_HASHES_PER_REPORT = 4096;
export const MAX_BAD_PEERS_PER_REPORT = 64;
const MAX_ID_BYTES = 128;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const FAILURE_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/** Shape and size checks, before the session is even bound. */
export function checkPrefetchReport(req: ReportPrefetchRequest): void {
  checkReportedText(req.jobId, MAX_ID_BYTES, "job_id");
  if (req.jobId === "") throw new ShoalError("INVALID_ARGUMENT", "job_id is empty");
  if (req.pieceHashes.length > MAX_PIECE_HASHES_PER_REPORT) {
    throw new ShoalError("INVALID_ARGUMENT", `${req.pieceHashes.length} piece hashes in one report, more than the ${MAX_PIECE_HASHES_PER_REPORT} allowed; send them in several`);
  }
  if (req.badPeers.length > MAX_BAD_PEERS_PER_REPORT) throw new ShoalError("INVALID_ARGUMENT", `${req.badPeers.length} bad peers in one report, more than the ${MAX_BAD_PEERS_PER_REPORT} allowed`);
  for (const h of req.pieceHashes) {
    if (!DIGEST.test(h.blobDigest)) throw new ShoalError("INVALID_ARGUMENT", "a piece hash names a blob digest that is not sha256:<64 hex>");
    if (!DIGEST.test(h.hash)) throw new ShoalError("INVALID_ARGUMENT", `the hash of piece ${h.index} is not sha256:<64 hex>`);
  }
  for (const b of req.badPeers) {
    if (!DIGEST.test(b.blobDigest)) throw new ShoalError("INVALID_ARGUMENT", "a bad-peer report names a blob digest that is not sha256:<64 hex>");
    checkReportedText(b.nodeId, MAX_ID_BYTES, "bad_peers.node_id");
    checkReportedText(b.reason, MAX_STATUS_MESSAGE_BYTES, "bad_peers.reason");
  }
  if (!Object.values(PrefetchOutcome).includes(req.outcome) || req.outcome === PrefetchOutcome.UNRECOGNIZED) {
    throw new ShoalError("INVALID_ARGUMENT", `unknown prefetch outcome ${String(req.outcome)}`);
  }
  if (req.outcome === PrefetchOutcome.PREFETCH_OUTCOME_FAILED && !FAILURE_CODE.test(req.failureCode)) {
    throw new ShoalError("INVALID_ARGUMENT", "a FAILED report needs a failure_code of capitals, digits and _");
  }
  if (req.failureCode !== "" && !FAILURE_CODE.test(req.failureCode)) throw new ShoalError("INVALID_ARGUMENT", "failure_code must be capitals, digits and _");
  checkReportedText(req.failureMessage, MAX_STATUS_MESSAGE_BYTES, "failure_message");
}

/**
 * Whether the node's order allows the report: throws NOT_FOUND when the node has no order of the job
 * (withdrawn, or never its job), PERMISSION_DENIED when a node that is not a seed sends hashes,
 * INVALID_ARGUMENT when a hash or bad peer is for a blob or piece the order does not have.
 */
export function authorizePrefetchReport(entry: BoardEntry | undefined, nodeId: string, req: ReportPrefetchRequest): BoardEntry {
  if (entry === undefined) throw new ShoalError("NOT_FOUND", `node ${nodeId} has no order of prefetch job ${req.jobId} (it ended or was replanned without this node)`);
  if (req.pieceHashes.length > 0 && !entry.order.seed) {
    throw new ShoalError("PERMISSION_DENIED", `node ${nodeId} is not a seed of prefetch job ${req.jobId}: only seeds publish piece hashes`);
  }
  const pieces = new Map(entry.order.blobs.map((b) => [b.digest, pieceCountOf(Number(b.size), b.pieceSize)]));
  for (const h of req.pieceHashes) {
    const count = pieces.get(h.blobDigest);
    if (count === undefined) throw new ShoalError("INVALID_ARGUMENT", `blob ${h.blobDigest} is not part of prefetch job ${req.jobId}`);
    if (h.index >= count) throw new ShoalError("INVALID_ARGUMENT", `blob ${h.blobDigest} has ${count} pieces; there is no piece ${h.index}`);
  }
  for (const b of req.badPeers) {
    if (!pieces.has(b.blobDigest)) throw new ShoalError("INVALID_ARGUMENT", `blob ${b.blobDigest} is not part of prefetch job ${req.jobId}`);
    if (!entry.order.candidates.some((c) => c.nodeId === b.nodeId)) throw new ShoalError("INVALID_ARGUMENT", `node ${b.nodeId} is not a peer this node was told to ask in prefetch job ${req.jobId}`);
  }
  return entry;
}
