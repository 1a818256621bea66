// The downloader of one blob for one node of a prefetch job: it asks its candidate peers which
// pieces they hold (Have, again every haveRefreshMs), lets choosePieces pick what to ask of whom
// (rarest first, one request per peer by default, endgame near the end), and hands every piece
// that arrives to the sink, which checks it against its hash before it is written. A peer that
// serves a bad piece is reported and not asked again in this job; one that refuses us (revoked,
// wrong zone, grant refused) is dropped; one that times out is benched for a while, and dropped
// after a few timeouts in a row. When no peer has supplied anything for stallTimeoutMs, the
// pieces nobody can give come from the origin if this node has one, and otherwise the download
// ends with PREFETCH_NO_SOURCE so the manager can make the node a seed. `seedBlob` is the seed's
// side: the blob from the origin, piece by piece, from its staggered start piece.
//
// The sink (the piece store in src/agent/images) and the fetcher (PeerClient) are interfaces so
// that this folder imports neither src/agent/images nor a transport the test cannot see.
import { countBits, hasBit, isComplete, newBitfield, pieceCountOf, setBit } from "../../base/bitfield.js";
import type { Clock, Timer } from "../../base/clock.js";
import { isShoalError, ShoalError, type ShoalErrorCode } from "../../base/errors.js";
import type { Random } from "../../base/random.js";
import { choosePieces, type PieceChoicePeer } from "./piece-choice.js";

/** Where a node's verified pieces go (the piece store implements it). */
export interface PieceSink {
  /** Registers the blob (idempotent); what of it is held already, verified, and its path when it is complete. */
  track(digest: string, size: number, pieceSize: number, pieceHashes?: ReadonlyArray<string | undefined>): Promise<{ have: Uint8Array; complete: boolean; path?: string }>;
  /** Checks `bytes` against the piece's hash (PIECE_CORRUPT, nothing written), then writes them. */
  writePiece(digest: string, index: number, bytes: Uint8Array, expectedHash?: string): Promise<void>;
  /** A seed's origin piece: written unchecked, its sha256 returned. */
  writeOriginPiece(digest: string, index: number, bytes: Uint8Array): Promise<string>;
  /** Checks the whole blob against its digest (DIGEST_MISMATCH drops it) and commits it; its path. */
  complete(digest: string, what?: string): Promise<string>;
  /** Drops a partial blob. */
  discard(digest: string): Promise<void>;
}

/** The peer wire as the downloader uses it (PeerClient implements it). */
export interface PeerFetcher {
  have(addr: string, digest: string, grant: Uint8Array, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<{ pieceSize: number; pieceCount: number; have: Uint8Array }>;
  /** Must reject with TIMEOUT once timeoutMs passes. */
  fetchPiece(addr: string, digest: string, index: number, grant: Uint8Array, opts?: { timeoutMs?: number; signal?: AbortSignal; maxBytes?: number }): Promise<Buffer>;
  closePeer?(addr: string): void;
}

export interface PeerAddress {
  nodeId: string;
  addr: string;
}

export interface BlobFetchProgress {
  digest: string;
  piecesDone: number;
  pieceCount: number;
  bytesFromPeers: number;
  bytesFromOrigin: number;
}

export interface BlobFetchResult {
  fromPeers: number;
  fromOrigin: number;
  /** Where the content store holds it. */
  path: string;
  /** The blob was in the content store already; nothing was fetched. */
  alreadyHeld: boolean;
}

/** Bytes `offset` .. `offset + length - 1` of the blob from the registry (a resumable ranged pull). */
export type OriginPull = (offset: number, length: number, signal: AbortSignal) => Promise<Buffer>;

export interface BlobFetchOptions {
  digest: string;
  size: number;
  pieceSize: number;
  /**
   * One per piece. Read whenever a piece is chosen or arrives, so the caller may fill in entries
   * as the manager publishes them; a piece whose hash is not known yet is not asked for.
   */
  pieceHashes: ReadonlyArray<string | undefined>;
  /** The candidates; a function is read again on every Have round, so a replan reaches a running download. */
  peers: ReadonlyArray<PeerAddress> | (() => ReadonlyArray<PeerAddress>);
  /** This node's grant for the blob; a function lets the wiring hand in a renewed one. */
  grant: Uint8Array | (() => Uint8Array);
  sink: PieceSink;
  peer: PeerFetcher;
  origin?: OriginPull;
  clock: Clock;
  random: Random;
  pieceTimeoutMs: number;
  /** 1 unless told: the simulator found more only queue behind each other at the sender. */
  maxInFlightPerPeer?: number;
  haveRefreshMs: number;
  /** No piece from a peer for this long: the origin (or PREFETCH_NO_SOURCE). 2 × pieceTimeoutMs unless told. */
  stallTimeoutMs?: number;
  /** Timeouts (or broken connections) in a row after which a peer is dropped for the job; 3 unless told. */
  maxPeerFailures?: number;
  signal?: AbortSignal;
  onBadPeer?: (nodeId: string, piece: number, reason: string) => void;
  onProgress?: (p: BlobFetchProgress) => void;
  /** Names the blob in errors (e.g. `image reg/app@sha256:…: blob sha256:…`). */
  what?: string;
}

export const DEFAULT_MAX_IN_FLIGHT_PER_PEER = 1;
export const DEFAULT_MAX_PEER_FAILURES = 3;
/** A benched peer waits pieceTimeoutMs × 2^(failures-1), at most this many piece timeouts. */
const MAX_BENCH_TIMEOUTS = 8;

/** Refusals that will not change during this job: that peer is not asked again. */
const EXCLUDING: ReadonlySet<ShoalErrorCode> = new Set<ShoalErrorCode>([
  "CERT_REVOKED",
  "CERT_INVALID",
  "CERT_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_WRONG_CLUSTER",
  "CERT_WRONG_ROLE",
  "PEER_WRONG_ZONE",
  "GRANT_INVALID",
  "GRANT_WRONG_CLUSTER",
  "GRANT_WRONG_ZONE",
  "GRANT_WRONG_NODE",
  "GRANT_WRONG_BLOB",
  "GRANT_EXPIRED",
  "PERMISSION_DENIED",
  "UNAUTHENTICATED",
  "INVALID_ARGUMENT",
]);

interface PeerState extends PeerAddress {
  /** Its last Have answer; undefined until one came. */
  have: Uint8Array | undefined;
  inFlight: number;
  haveAsked: boolean;
  /** Why it is out of this job, if it is. */
  excluded: string | undefined;
  /** Consecutive timeouts or broken calls. */
  failures: number;
  benchedUntilMs: number;
}

interface Request {
  peer: string;
  piece: number;
  abort: AbortController;
}

function checkPositive(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new ShoalError("INVALID_ARGUMENT", `${what} must be a positive integer, got ${value}`);
  return value;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function abortReason(signal: AbortSignal): ShoalError {
  const reason: unknown = signal.reason;
  return reason instanceof ShoalError ? reason : new ShoalError("UNAVAILABLE", "the blob download was cancelled", { cause: reason });
}

class BlobDownload {
  private have!: Uint8Array;
  private readonly pieceCount: number;
  private readonly peers = new Map<string, PeerState>();
  private readonly inFlight = new Map<number, Set<string>>();
  private readonly requests = new Set<Request>();
  private readonly running = new Set<Promise<void>>();
  /** Pieces being written now: a second copy (endgame) is dropped. */
  private readonly writing = new Set<number>();
  private originPiece: number | undefined;
  private readonly abort = new AbortController();
  private fromPeers = 0;
  private fromOrigin = 0;
  private lastPeerProgressMs: number;
  private refresh: Timer | undefined;
  private settle!: { resolve: () => void; reject: (e: ShoalError) => void };
  private finished = false;
  private readonly maxInFlightPerPeer: number;
  private readonly stallTimeoutMs: number;
  private readonly maxPeerFailures: number;
  private readonly what: string;

  constructor(private readonly o: BlobFetchOptions) {
    checkPositive(o.pieceSize, "pieceSize");
    checkPositive(o.pieceTimeoutMs, "pieceTimeoutMs");
    checkPositive(o.haveRefreshMs, "haveRefreshMs");
    this.maxInFlightPerPeer = checkPositive(o.maxInFlightPerPeer ?? DEFAULT_MAX_IN_FLIGHT_PER_PEER, "maxInFlightPerPeer");
    this.stallTimeoutMs = checkPositive(o.stallTimeoutMs ?? 2 * o.pieceTimeoutMs, "stallTimeoutMs");
    this.maxPeerFailures = checkPositive(o.maxPeerFailures ?? DEFAULT_MAX_PEER_FAILURES, "maxPeerFailures");
    this.pieceCount = pieceCountOf(o.size, o.pieceSize);
    if (o.pieceHashes.length !== this.pieceCount) throw new ShoalError("INVALID_ARGUMENT", `blob ${o.digest}: ${o.pieceHashes.length} piece hashes for ${this.pieceCount} pieces`);
    this.what = o.what ?? `blob ${o.digest}`;
    this.lastPeerProgressMs = o.clock.nowMs();
  }

  async run(): Promise<BlobFetchResult> {
    const o = this.o;
    if (o.signal?.aborted === true) throw abortReason(o.signal);
    const tracked = await o.sink.track(o.digest, o.size, o.pieceSize, o.pieceHashes);
    if (tracked.complete) return { fromPeers: 0, fromOrigin: 0, path: tracked.path ?? "", alreadyHeld: true };
    this.have = tracked.have;
    if (isAborted(o.signal)) {
      await o.sink.discard(o.digest);
      throw abortReason(o.signal!);
    }
    const onAbort = (): void => this.fail(abortReason(o.signal!));
    o.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        this.settle = { resolve, reject };
        this.refresh = o.clock.setInterval(() => this.askHave(), o.haveRefreshMs);
        this.askHave();
        this.pump();
      });
    } catch (err) {
      await this.stop();
      // Cancelled: nothing of it stays. (A function call: TS narrowed `aborted` to false above.)
      if (isAborted(o.signal)) await o.sink.discard(o.digest);
      throw err;
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    await this.stop();
    const path = await o.sink.complete(o.digest, this.what);
    return { fromPeers: this.fromPeers, fromOrigin: this.fromOrigin, path, alreadyHeld: false };
  }

  /** Ends every call and waits for them, so nothing writes after the download returned. */
  private async stop(): Promise<void> {
    this.finished = true;
    this.refresh?.cancel();
    this.abort.abort(new ShoalError("UNAVAILABLE", "the blob download ended"));
    for (const r of this.requests) r.abort.abort(new ShoalError("UNAVAILABLE", "the blob download ended"));
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private fail(err: ShoalError): void {
    if (this.finished) return;
    this.finished = true;
    this.settle.reject(err);
  }

  private grant(): Uint8Array {
    return typeof this.o.grant === "function" ? this.o.grant() : this.o.grant;
  }

  /** Keeps a call's promise until it settles; a bug that escapes one ends the download, never unhandled. */
  private track(p: Promise<void>): void {
    const q: Promise<void> = p
      .catch((err: unknown) => this.fail(err instanceof ShoalError ? err : new ShoalError("INTERNAL", `${this.what}: ${messageOf(err)}`, { cause: err })))
      .finally(() => this.running.delete(q));
    this.running.add(q);
  }

  /** Brings the peer table in line with the candidate list: new ones added, dropped ones' requests cancelled. */
  private syncPeers(): void {
    const listed = typeof this.o.peers === "function" ? this.o.peers() : this.o.peers;
    const ids = new Set<string>();
    for (const p of listed) {
      ids.add(p.nodeId);
      const known = this.peers.get(p.nodeId);
      if (known === undefined) this.peers.set(p.nodeId, { ...p, have: undefined, inFlight: 0, haveAsked: false, excluded: undefined, failures: 0, benchedUntilMs: 0 });
      else known.addr = p.addr;
    }
    for (const [id, p] of this.peers) {
      if (ids.has(id) || p.excluded !== undefined) continue;
      // Left the plan (revoked, excluded by the manager): not asked again, its requests cut now.
      this.exclude(p, "no longer a candidate of this job");
    }
  }

  private exclude(p: PeerState, why: string): void {
    if (p.excluded !== undefined) return;
    p.excluded = why;
    for (const r of this.requests) if (r.peer === p.nodeId) r.abort.abort(new ShoalError("UNAVAILABLE", `peer ${p.nodeId} left this job`));
    this.o.peer.closePeer?.(p.addr);
  }

  private askHave(): void {
    if (this.finished) return;
    this.syncPeers();
    for (const p of this.peers.values()) {
      if (p.excluded !== undefined || p.haveAsked || (p.have !== undefined && isComplete(p.have, this.pieceCount))) continue;
      p.haveAsked = true;
      this.track(this.haveOf(p));
    }
    this.pump();
  }

  private async haveOf(p: PeerState): Promise<void> {
    try {
      const res = await this.o.peer.have(p.addr, this.o.digest, this.grant(), { timeoutMs: this.o.pieceTimeoutMs, signal: this.abort.signal });
      if (this.finished || p.excluded !== undefined) return;
      if (res.pieceSize !== this.o.pieceSize || res.pieceCount !== this.pieceCount) {
        this.exclude(p, `it describes the blob as ${res.pieceCount} pieces of ${res.pieceSize} bytes, the plan as ${this.pieceCount} of ${this.o.pieceSize}`);
        return;
      }
      if (p.have === undefined || gainsFor(this.have, p.have, res.have)) this.lastPeerProgressMs = this.o.clock.nowMs();
      p.have = res.have;
    } catch (err) {
      if (this.finished) return;
      if (isShoalError(err, "NOT_FOUND")) p.have ??= newBitfield(this.pieceCount);
      else if (isShoalError(err) && EXCLUDING.has(err.code)) this.exclude(p, `it refused us: ${err.code}`);
      // Otherwise (down, slow) the next round asks again.
    } finally {
      p.haveAsked = false;
      this.pump();
    }
  }

  /** After every event: finished? what to ask next? origin? nothing left to ask? */
  private pump(): void {
    if (this.finished) return;
    if (isComplete(this.have, this.pieceCount) && this.writing.size === 0) {
      this.finished = true;
      this.settle.resolve();
      return;
    }
    this.syncPeers();
    const now = this.o.clock.nowMs();
    // A piece whose hash is unknown cannot be checked, so it is not asked for yet: counted as held.
    const wanted = new Uint8Array(this.have);
    for (let i = 0; i < this.pieceCount; i++) if (this.o.pieceHashes[i] === undefined || this.writing.has(i)) setBit(wanted, i);
    const choice: PieceChoicePeer[] = [];
    for (const p of this.peers.values()) {
      if (p.have === undefined) continue;
      const failed = p.excluded !== undefined || p.benchedUntilMs > now;
      choice.push({ id: p.nodeId, have: p.have, inFlight: p.inFlight, ...(failed ? { failed: true } : {}) });
    }
    if (choice.length > 0 && countBits(wanted) < this.pieceCount) {
      const asks = choosePieces({ pieceCount: this.pieceCount, have: wanted, inFlight: this.inFlight, peers: choice, maxInFlightPerPeer: this.maxInFlightPerPeer, endgame: "auto", random: this.o.random });
      for (const { peer, piece } of asks) this.request(this.peers.get(peer)!, piece);
    }
    this.maybeOrigin(now);
  }

  private maybeOrigin(now: number): void {
    const stalled = now - this.lastPeerProgressMs >= this.stallTimeoutMs && this.requests.size === 0;
    const usable = [...this.peers.values()].filter((p) => p.excluded === undefined);
    if (this.o.origin === undefined) {
      if (usable.length === 0 || stalled) {
        const why = usable.length === 0 ? this.noPeersReason() : `no peer supplied a piece for ${now - this.lastPeerProgressMs} ms`;
        this.fail(new ShoalError("PREFETCH_NO_SOURCE", `${this.what}: ${countBits(this.have)} of ${this.pieceCount} pieces held, ${why}, and this node has no origin to pull from`));
      }
      return;
    }
    if (this.originPiece !== undefined || !(stalled || usable.length === 0)) return;
    // Pieces no usable peer holds first; any missing piece not in flight otherwise.
    let pick: number | undefined;
    for (let i = 0; i < this.pieceCount; i++) {
      if (hasBit(this.have, i) || this.writing.has(i) || (this.inFlight.get(i)?.size ?? 0) > 0) continue;
      const held = usable.some((p) => p.have !== undefined && hasBit(p.have, i));
      if (!held) {
        pick = i;
        break;
      }
      pick ??= i;
    }
    if (pick !== undefined) this.fromTheOrigin(pick);
  }

  private noPeersReason(): string {
    const gone = [...this.peers.values()].map((p) => `${p.nodeId} (${p.excluded ?? "?"})`);
    return gone.length === 0 ? "the plan lists no peer for it" : `every peer is out of the job: ${gone.join(", ")}`;
  }

  private pieceLength(index: number): number {
    return Math.min(this.o.pieceSize, this.o.size - index * this.o.pieceSize);
  }

  private request(p: PeerState, piece: number): void {
    const req: Request = { peer: p.nodeId, piece, abort: new AbortController() };
    this.requests.add(req);
    (this.inFlight.get(piece) ?? this.inFlight.set(piece, new Set()).get(piece)!).add(p.nodeId);
    p.inFlight++;
    this.track(this.fetchFrom(p, req));
  }

  private async fetchFrom(p: PeerState, req: Request): Promise<void> {
    const { piece } = req;
    try {
      let bytes: Buffer;
      try {
        bytes = await this.o.peer.fetchPiece(p.addr, this.o.digest, piece, this.grant(), { timeoutMs: this.o.pieceTimeoutMs, signal: req.abort.signal, maxBytes: this.pieceLength(piece) });
      } catch (err) {
        this.failedRequest(p, req, err);
        return;
      }
      if (this.finished || req.abort.signal.aborted || hasBit(this.have, piece) || this.writing.has(piece)) return; // a duplicate
      this.writing.add(piece);
      try {
        await this.o.sink.writePiece(this.o.digest, piece, bytes, this.o.pieceHashes[piece]);
      } catch (err) {
        if (isShoalError(err, "PIECE_CORRUPT")) this.failedRequest(p, req, err);
        // Our own side broke (the disk, the store): no other peer will do better.
        else if (!this.finished) this.fail(err instanceof ShoalError ? err : new ShoalError("INTERNAL", `${this.what}: writing piece ${piece} failed: ${messageOf(err)}`, { cause: err }));
        return;
      } finally {
        this.writing.delete(piece);
      }
      setBit(this.have, piece);
      this.fromPeers += bytes.length;
      p.failures = 0;
      this.lastPeerProgressMs = this.o.clock.nowMs();
      // Endgame copies of this piece elsewhere are no longer needed.
      for (const r of this.requests) if (r !== req && r.piece === piece) r.abort.abort(new ShoalError("UNAVAILABLE", "the piece arrived from another peer"));
      this.progress();
    } finally {
      this.requests.delete(req);
      const asked = this.inFlight.get(piece);
      asked?.delete(p.nodeId);
      if (asked?.size === 0) this.inFlight.delete(piece);
      p.inFlight--;
      this.pump();
    }
  }

  private failedRequest(p: PeerState, req: Request, err: unknown): void {
    if (this.finished || req.abort.signal.aborted) return;
    const code = isShoalError(err) ? err.code : undefined;
    if (code === "PIECE_CORRUPT") {
      // The bytes did not match the plan's hash: nothing was written; this peer is out of the job.
      this.o.onBadPeer?.(p.nodeId, req.piece, messageOf(err));
      this.exclude(p, `it served a corrupt piece ${req.piece}`);
    } else if (code !== undefined && EXCLUDING.has(code)) {
      this.exclude(p, `it refused us: ${code}`);
    } else if (code === "NOT_FOUND" || code === "STORE_CORRUPT") {
      // It no longer holds the piece (or its copy went bad on its disk): ask its Have again.
      if (p.have !== undefined) p.have = withoutBit(p.have, req.piece);
    } else if (code === "PEER_OVERLOADED") {
      // "Busy": no fault of the peer; back off for a Have round.
      p.benchedUntilMs = this.o.clock.nowMs() + this.o.haveRefreshMs;
    } else {
      // A timeout or a broken call: benched (doubling), dropped after maxPeerFailures in a row.
      p.failures++;
      if (p.failures >= this.maxPeerFailures) this.exclude(p, `${p.failures} timeouts or broken calls in a row`);
      else p.benchedUntilMs = this.o.clock.nowMs() + this.o.pieceTimeoutMs * Math.min(MAX_BENCH_TIMEOUTS, 2 ** (p.failures - 1));
    }
  }

  private fromTheOrigin(piece: number): void {
    const origin = this.o.origin!;
    this.originPiece = piece;
    this.writing.add(piece);
    const job = (async () => {
      try {
        const bytes = await origin(piece * this.o.pieceSize, this.pieceLength(piece), this.abort.signal);
        if (this.finished) return;
        const hash = this.o.pieceHashes[piece];
        if (hash !== undefined) await this.o.sink.writePiece(this.o.digest, piece, bytes, hash);
        else await this.o.sink.writeOriginPiece(this.o.digest, piece, bytes);
        setBit(this.have, piece);
        this.fromOrigin += bytes.length;
        this.progress();
      } catch (err) {
        // The origin pull retries on its own; what reaches here ends the download.
        if (!this.finished) this.fail(err instanceof ShoalError ? err : new ShoalError("REGISTRY_UNAVAILABLE", `${this.what}: piece ${piece} from the origin failed: ${messageOf(err)}`, { cause: err }));
      } finally {
        this.writing.delete(piece);
        this.originPiece = undefined;
        this.pump();
      }
    })();
    this.track(job);
  }

  private progress(): void {
    this.o.onProgress?.({ digest: this.o.digest, piecesDone: countBits(this.have), pieceCount: this.pieceCount, bytesFromPeers: this.fromPeers, bytesFromOrigin: this.fromOrigin });
  }
}

/** Whether `next` holds a piece we lack that `prev` did not. */
function gainsFor(ours: Uint8Array, prev: Uint8Array, next: Uint8Array): boolean {
  for (let i = 0; i < next.length; i++) if ((next[i]! & ~prev[i]! & ~ours[i]! & 0xff) !== 0) return true;
  return false;
}

function withoutBit(bf: Uint8Array, index: number): Uint8Array {
  const out = new Uint8Array(bf);
  out[index >> 3]! &= ~(0x80 >> (index & 7)) & 0xff;
  return out;
}

/**
 * Fetches one blob from its peers (and the origin as the last resort) into the sink, verified
 * piece by piece and as a whole; see the file's opening comment. Rejects with the signal's reason
 * when cancelled (the partial blob discarded), PREFETCH_NO_SOURCE when nobody can supply it, or the
 * sink's DIGEST_MISMATCH when the assembled blob is not the digest. After any other failure the
 * verified pieces stay in the sink (still served to others) until the caller discards them.
 */
export function fetchBlob(opts: BlobFetchOptions): Promise<BlobFetchResult> {
  return new BlobDownload(opts).run();
}

export interface SeedBlobOptions {
  digest: string;
  size: number;
  pieceSize: number;
  /** Hashes known already (a second seed): checked on arrival. */
  pieceHashes?: ReadonlyArray<string | undefined>;
  sink: PieceSink;
  origin: OriginPull;
  /** The planner's originStartPiece for this seed, so seeds of a zone pull different pieces first. */
  startPiece: number;
  /** Origin pieces requested ahead of the one being written (the next is asked while one streams); 1 unless told. */
  readAhead?: number;
  signal?: AbortSignal;
  onPieceHash?: (index: number, hash: string) => void;
  onProgress?: (p: BlobFetchProgress) => void;
  what?: string;
}

/**
 * A seed's pull: every piece it lacks from the origin, in order from `startPiece` (wrapping),
 * each written with its hash computed (reported through onPieceHash for the manager to publish),
 * then the whole blob checked against its digest and committed.
 */
export async function seedBlob(opts: SeedBlobOptions): Promise<BlobFetchResult> {
  const { digest, size, pieceSize, sink } = opts;
  checkPositive(pieceSize, "pieceSize");
  const pieceCount = pieceCountOf(size, pieceSize);
  if (!Number.isSafeInteger(opts.startPiece) || opts.startPiece < 0 || (pieceCount > 0 && opts.startPiece >= pieceCount)) {
    throw new ShoalError("INVALID_ARGUMENT", `startPiece ${opts.startPiece} is outside a blob of ${pieceCount} pieces`);
  }
  const what = opts.what ?? `blob ${digest}`;
  const tracked = await sink.track(digest, size, pieceSize, opts.pieceHashes);
  if (tracked.complete) return { fromPeers: 0, fromOrigin: 0, path: tracked.path ?? "", alreadyHeld: true };
  const have = tracked.have;
  const order: number[] = [];
  for (let k = 0; k < pieceCount; k++) {
    const i = (opts.startPiece + k) % pieceCount;
    if (!hasBit(have, i)) order.push(i);
  }
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(opts.signal!.reason);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const readAhead = checkPositive(opts.readAhead ?? 1, "readAhead");
  const pulls: Array<Promise<Buffer>> = [];
  const lengthOf = (i: number): number => Math.min(pieceSize, size - i * pieceSize);
  const pull = (k: number): void => {
    const i = order[k];
    if (i === undefined) return;
    const p = opts.origin(i * pieceSize, lengthOf(i), controller.signal);
    p.catch(() => {}); // awaited in order below; a failure of one read ahead must not go unhandled
    pulls[k] = p;
  };
  let fromOrigin = 0;
  try {
    for (let k = 0; k <= readAhead; k++) pull(k);
    for (let k = 0; k < order.length; k++) {
      if (opts.signal?.aborted === true) throw abortReason(opts.signal);
      const bytes = await pulls[k]!;
      delete pulls[k];
      pull(k + readAhead + 1);
      const i = order[k]!;
      const known = opts.pieceHashes?.[i];
      let hash: string;
      if (known !== undefined) {
        await sink.writePiece(digest, i, bytes, known);
        hash = known;
      } else hash = await sink.writeOriginPiece(digest, i, bytes);
      setBit(have, i);
      fromOrigin += bytes.length;
      opts.onPieceHash?.(i, hash);
      opts.onProgress?.({ digest, piecesDone: countBits(have), pieceCount, bytesFromPeers: 0, bytesFromOrigin: fromOrigin });
    }
  } catch (err) {
    controller.abort(new ShoalError("UNAVAILABLE", "the seed pull ended"));
    await Promise.allSettled(pulls.filter((p) => p !== undefined));
    if (opts.signal?.aborted === true) {
      await sink.discard(digest);
      throw abortReason(opts.signal);
    }
    throw err;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
  return { fromPeers: 0, fromOrigin, path: await sink.complete(digest, what), alreadyHeld: false };
}
