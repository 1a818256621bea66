// The Blobs service a worker serves its verified pieces with (DESIGN.md §3 rule 9). Mounted on the
// node's SecureServer "open" listener, whose interceptor has already checked, before any handler
// runs, the certificate's chain, dates, cluster (O), role and revocation; this file adds what only a
// peer knows: the requester's zone must be ours, and its grant must name this cluster, our zone, the
// requester's node ID and the requested blob, unexpired. Then it streams a piece in chunks, bounded
// per requester and under the node's upload rate.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { clearBit, hasBit } from "../../base/bitfield.js";
import type { Clock } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";
import { verifyGrant, type RevocationChecker, type RootCA } from "../../ca/index.js";
import { BlobsService, type BlobsServer, type FetchPieceRequest, type HaveRequest, type HaveResponse, type PieceChunk } from "../../proto/shoal/v1/blobs.js";
import { toGrpcError } from "../../transport/errors.js";
import type { PeerIdentity } from "../../transport/identity.js";
import type { RevocationState } from "../../transport/revocation.js";
import type { SecureServer } from "../../transport/server.js";
import { checkRate, TokenBucket } from "./rate-limit.js";

/** What a worker holds, as the content store reports it (implemented in src/agent/images, wired by src/agent). */
export interface PieceSource {
  /** Verified pieces only; undefined when the blob is not held at all. */
  held(digest: string): { pieceSize: number; pieceCount: number; have: Uint8Array } | undefined;
  /** Throws ShoalError NOT_FOUND if the piece is not held. */
  readPiece(digest: string, index: number): Promise<Buffer>;
}

export const DEFAULT_MAX_IN_FLIGHT_PER_PEER = 4;
export const MAX_IN_FLIGHT_PER_PEER_LIMIT = 256;
export const DEFAULT_CHUNK_BYTES = 256 * 1024;
export const DEFAULT_SEED_MAX_STREAMS = 2;
/** Chunks stay well under the transport's 4 MiB default message bound. */
export const MAX_CHUNK_BYTES = 1024 * 1024;
const MIN_CHUNK_BYTES = 1024;
const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

export interface PeerServerOptions {
  clusterId: string;
  /** This node's zone, as its own certificate carries it. */
  zone: string;
  /**
   * The cluster root that signs grants; a verify-only root (RootCA.fromCertOnly) is all a worker
   * has and needs. A function is read on every request: the node's trusted roots, which change
   * with a root CA rotation (both during it, the new one alone after it).
   */
  rootCA: RootCA | (() => readonly RootCA[]);
  source: PieceSource;
  /** The verified identity of a call's client: SecureServer.peerOf. */
  peerOf: (call: { metadata: grpc.Metadata }) => PeerIdentity;
  /** The node's revocation list; a requester revoked mid-stream has its streams ended at once. */
  revocation: RevocationState;
  clock: Clock;
  logger: Logger;
  /** FetchPiece streams one requesting node may have open here (DEFAULT_MAX_IN_FLIGHT_PER_PEER). */
  maxInFlightPerPeer?: number;
  /** Upload limit of the whole server, bytes per second; 0 (the default) is unlimited. */
  uploadBytesPerSec?: number;
  /** Bytes per PieceChunk message (DEFAULT_CHUNK_BYTES). */
  chunkBytes?: number;
  /**
   * Whether this node is a seed of a job that has `digest` (it pulled it from the registry). A seed
   * hides a piece from its Have once it starts sending it to one peer, and answers busy
   * (PEER_OVERLOADED) to the others, for seedHideMs: its upload then brings every piece into the
   * zone once, and the zone passes it on ("super-seeding"; the bandwidth simulation in cluster-sim
   * showed the seed otherwise sends the same early pieces to several peers).
   */
  isSeeding?: (digest: string) => boolean;
  /** How long a seed hides a piece it sent, for pieces of `pieceSize` bytes; 0 (the default): never. */
  seedHideMs?: (pieceSize: number) => number;
  /**
   * While it hides pieces, a seed sends at most this many pieces at once (DEFAULT_SEED_MAX_STREAMS)
   * and answers busy beyond: its upload then goes to one or two pieces at full speed, which their
   * receivers can pass on at once, instead of to every peer's request at a fraction of it.
   */
  seedMaxStreams?: number;
  /**
   * TEST ONLY: rewrites a piece's bytes before they are sent, so a test can make this peer serve
   * corrupt data and check that downloaders detect, report and exclude it. Never set in production
   * wiring; the daemon has no flag for it.
   */
  corruptPiece?: (digest: string, index: number, bytes: Buffer) => Buffer;
}

interface OpenStream {
  identity: PeerIdentity;
  abort: AbortController;
}

export interface PeerServerStats {
  /** FetchPiece streams open now. */
  openStreams: number;
  /** Piece bytes handed to the transport since start. */
  bytesSent: number;
  /** Streams waiting for the upload rate limit right now. */
  waitingForRate: number;
}

function boundedInteger(value: number | undefined, fallback: number, min: number, max: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new ShoalError("INVALID_ARGUMENT", `${what} must be an integer between ${min} and ${max}, got ${v}`);
  return v;
}

export class PeerServer {
  /** The handlers, for SecureServer.addService(BlobsService, …); `mount` does that. */
  readonly implementation: BlobsServer;
  private zone: string;
  private readonly maxInFlightPerPeer: number;
  private readonly chunkBytes: number;
  private readonly upload: TokenBucket;
  private readonly open = new Set<OpenStream>();
  private readonly inFlightByNode = new Map<string, number>();
  private readonly log: Logger;
  private readonly unsubscribe: () => void;
  private readonly grantRevocation: RevocationChecker;
  private bytesSent = 0;
  private waitingForRate = 0;
  /** FetchPiece streams of blobs this node seeds (with hiding on), open now. */
  private seedStreams = 0;
  /** For each blob this node seeds: pieces hidden since it began sending them to one peer. */
  private readonly hidden = new Map<string, Map<number, { nodeId: string; untilMs: number }>>();
  private closed = false;

  constructor(private readonly opts: PeerServerOptions) {
    this.zone = opts.zone;
    this.maxInFlightPerPeer = boundedInteger(opts.maxInFlightPerPeer, DEFAULT_MAX_IN_FLIGHT_PER_PEER, 1, MAX_IN_FLIGHT_PER_PEER_LIMIT, "maxInFlightPerPeer");
    this.chunkBytes = boundedInteger(opts.chunkBytes, DEFAULT_CHUNK_BYTES, MIN_CHUNK_BYTES, MAX_CHUNK_BYTES, "chunkBytes");
    const uploadBytesPerSec = opts.uploadBytesPerSec ?? 0;
    checkRate(uploadBytesPerSec, "the upload rate limit");
    // A burst of one chunk: an idle server may send one chunk at once, then it keeps to the rate.
    this.upload = new TokenBucket(uploadBytesPerSec, this.chunkBytes, opts.clock);
    this.log = opts.logger.child({ component: "p2p-peer-server" });
    this.implementation = {
      have: (call, callback) => this.have(call, callback),
      fetchPiece: (call) => void this.fetchPiece(call),
    };
    // The transport's interceptor ends a revoked peer's calls too; this stops our reading and
    // writing for them and frees their in-flight slots in the same tick.
    this.unsubscribe = opts.revocation.subscribe(() => this.endRevokedStreams());
    this.grantRevocation = { isRevoked: ({ nodeId, serial }) => opts.revocation.isRevoked(nodeId, serial) };
  }

  mount(server: SecureServer): void {
    server.addService(BlobsService, this.implementation);
  }

  /** After a zone change the node's certificate is reissued; serve the new zone from then on. */
  setZone(zone: string): void {
    this.zone = zone;
  }

  stats(): PeerServerStats {
    return { openStreams: this.open.size, bytesSent: this.bytesSent, waitingForRate: this.waitingForRate };
  }

  /** Ends every open stream (UNAVAILABLE) and refuses new calls. */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    for (const s of this.open) s.abort.abort(new ShoalError("UNAVAILABLE", "this peer is shutting down; try another peer"));
  }

  /** Zone, then grant, for one call; throws the refusal's ShoalError. */
  private admit(call: { metadata: grpc.Metadata }, digest: string, grant: Uint8Array): PeerIdentity {
    if (this.closed) throw new ShoalError("UNAVAILABLE", "this peer is shutting down; try another peer");
    const identity = this.opts.peerOf(call);
    if (identity.zone !== this.zone) {
      throw new ShoalError("PEER_WRONG_ZONE", `node ${identity.nodeId} is in zone ${identity.zone}; this peer serves zone ${this.zone} only`);
    }
    if (!DIGEST_PATTERN.test(digest)) throw new ShoalError("INVALID_ARGUMENT", "the blob digest must be sha256:<64 hex>");
    // A manager-signed grant (a cluster whose managers hold no root key) is checked against the same
    // revocation list as the requester: a removed or demoted manager's grants are refused. During a
    // root rotation the node trusts both roots; a grant under either is the cluster's.
    const roots = typeof this.opts.rootCA === "function" ? this.opts.rootCA() : this.opts.rootCA;
    verifyGrant(roots, grant, { clusterId: this.opts.clusterId, zone: this.zone, nodeId: identity.nodeId, blobDigest: digest, nowMs: this.opts.clock.nowMs(), revocation: this.grantRevocation });
    return identity;
  }

  private refused(what: string, err: unknown, call: { metadata: grpc.Metadata }): void {
    const code = err instanceof ShoalError ? err.code : "INTERNAL";
    let nodeId: string | undefined;
    try {
      nodeId = this.opts.peerOf(call).nodeId;
    } catch {
      nodeId = undefined;
    }
    // The grant's bytes are never logged: only who asked, for what, and the refusal's code.
    const fields = { nodeId, code };
    if (code === "INTERNAL") this.log.error({ ...fields, err }, `${what} failed`);
    else if (code === "PEER_OVERLOADED") this.log.debug(fields, `${what} answered busy`);
    else this.log.info(fields, `${what} refused`);
  }

  private have(call: grpc.ServerUnaryCall<HaveRequest, HaveResponse>, callback: grpc.sendUnaryData<HaveResponse>): void {
    try {
      const identity = this.admit(call, call.request.digest, call.request.grant);
      const held = this.opts.source.held(call.request.digest);
      if (held === undefined) throw new ShoalError("NOT_FOUND", "this peer holds no piece of that blob");
      const have = Buffer.from(held.have);
      for (const index of this.hiddenFrom(call.request.digest, identity.nodeId)) clearBit(have, index);
      callback(null, { pieceSize: held.pieceSize, pieceCount: held.pieceCount, have });
    } catch (err) {
      this.refused("Have", err, call);
      callback(toGrpcError(err));
    }
  }

  private async fetchPiece(call: grpc.ServerWritableStream<FetchPieceRequest, PieceChunk>): Promise<void> {
    const { digest, index, grant } = call.request;
    let stream: OpenStream | undefined;
    let hid = false;
    try {
      const identity = this.admit(call, digest, grant);
      stream = this.openStream(identity);
      const signal = stream.abort.signal;
      // The transport's own revocation refusal also shows up here as a cancel; keep its reason.
      call.on("cancelled", () => stream?.abort.abort(this.revokedError(identity) ?? new ShoalError("UNAVAILABLE", "the requester cancelled the piece")));
      const held = this.opts.source.held(digest);
      if (held === undefined) throw new ShoalError("NOT_FOUND", "this peer holds no piece of that blob");
      if (index >= held.pieceCount) throw new ShoalError("INVALID_ARGUMENT", `piece ${index} is out of range: the blob has ${held.pieceCount} pieces`);
      if (!hasBit(held.have, index)) throw new ShoalError("NOT_FOUND", `this peer does not hold piece ${index} of that blob`);
      if (this.hiddenFrom(digest, identity.nodeId).has(index)) {
        throw new ShoalError("PEER_OVERLOADED", `this seed sent piece ${index} to another peer a moment ago; ask the peers of the zone for it`);
      }
      const hideMs = this.seedHideMs(digest, held.pieceSize);
      if (hideMs > 0) {
        // The slot is checked first: a request refused busy hides nothing.
        if (this.seedStreams >= (this.opts.seedMaxStreams ?? DEFAULT_SEED_MAX_STREAMS)) {
          throw new ShoalError("PEER_OVERLOADED", `this seed is sending ${this.seedStreams} pieces already; ask the peers of the zone, or again soon`);
        }
        this.hide(digest, index, identity.nodeId, hideMs);
        hid = true;
        this.seedStreams++;
      }
      let bytes = await this.opts.source.readPiece(digest, index);
      signal.throwIfAborted();
      if (this.opts.corruptPiece) bytes = this.opts.corruptPiece(digest, index, bytes);
      await this.send(call, bytes, signal);
      call.end();
    } catch (err) {
      // The piece did not get through: the zone does not have it from this peer, so show it again.
      if (hid) this.hidden.get(digest)?.delete(index);
      const reason = stream?.abort.signal.aborted ? stream.abort.signal.reason : err;
      this.refused("FetchPiece", reason, call);
      endWithError(call, reason);
    } finally {
      if (hid) this.seedStreams--;
      if (stream) this.closeStream(stream);
    }
  }

  /** The pieces of `digest` hidden from `nodeId` now (none unless this node seeds it). */
  private hiddenFrom(digest: string, nodeId: string): Set<number> {
    const pieces = this.hidden.get(digest);
    const out = new Set<number>();
    if (pieces === undefined) return out;
    // No longer a seed of it (the job ended): nothing is hidden any more.
    if (this.opts.isSeeding?.(digest) !== true) {
      this.hidden.delete(digest);
      return out;
    }
    const now = this.opts.clock.nowMs();
    for (const [index, h] of pieces) {
      if (h.untilMs <= now) pieces.delete(index);
      else if (h.nodeId !== nodeId) out.add(index);
    }
    if (pieces.size === 0) this.hidden.delete(digest);
    return out;
  }

  /** How long this node hides a piece of `digest` it starts sending: 0 unless it seeds the blob with hiding on. */
  private seedHideMs(digest: string, pieceSize: number): number {
    if (this.opts.isSeeding?.(digest) !== true) return 0;
    const ms = this.opts.seedHideMs?.(pieceSize) ?? 0;
    return ms > 0 ? ms : 0;
  }

  private hide(digest: string, index: number, nodeId: string, ms: number): void {
    const pieces = this.hidden.get(digest) ?? this.hidden.set(digest, new Map()).get(digest)!;
    pieces.set(index, { nodeId, untilMs: this.opts.clock.nowMs() + ms });
  }

  private openStream(identity: PeerIdentity): OpenStream {
    const count = this.inFlightByNode.get(identity.nodeId) ?? 0;
    if (count >= this.maxInFlightPerPeer) {
      throw new ShoalError("PEER_OVERLOADED", `node ${identity.nodeId} already has ${count} pieces in flight at this peer (at most ${this.maxInFlightPerPeer}); ask another peer or wait`);
    }
    this.inFlightByNode.set(identity.nodeId, count + 1);
    const stream: OpenStream = { identity, abort: new AbortController() };
    this.open.add(stream);
    return stream;
  }

  private closeStream(stream: OpenStream): void {
    if (!this.open.delete(stream)) return;
    const left = (this.inFlightByNode.get(stream.identity.nodeId) ?? 1) - 1;
    if (left > 0) this.inFlightByNode.set(stream.identity.nodeId, left);
    else this.inFlightByNode.delete(stream.identity.nodeId);
  }

  /** Writes the piece in chunks, each after the upload limit allows it and the transport drained. */
  private async send(call: grpc.ServerWritableStream<FetchPieceRequest, PieceChunk>, bytes: Buffer, signal: AbortSignal): Promise<void> {
    for (let at = 0; at < bytes.length; at += this.chunkBytes) {
      const data = bytes.subarray(at, Math.min(bytes.length, at + this.chunkBytes));
      this.waitingForRate++;
      try {
        await this.upload.take(data.length, signal);
      } finally {
        this.waitingForRate--;
      }
      signal.throwIfAborted();
      this.bytesSent += data.length;
      if (!call.write({ data })) await drained(call, signal);
    }
  }

  private revokedError(identity: PeerIdentity): ShoalError | undefined {
    if (!this.opts.revocation.isRevoked(identity.nodeId, identity.serial)) return undefined;
    return new ShoalError("CERT_REVOKED", `node ${identity.nodeId} has been removed from the cluster; join again with a token`);
  }

  private endRevokedStreams(): void {
    for (const s of this.open) {
      const revoked = this.revokedError(s.identity);
      if (revoked) s.abort.abort(revoked);
    }
  }
}

function drained(call: grpc.ServerWritableStream<FetchPieceRequest, PieceChunk>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      call.off("drain", done);
      signal.removeEventListener("abort", aborted);
      resolve();
    };
    const aborted = (): void => {
      call.off("drain", done);
      reject(signal.reason);
    };
    call.on("drain", done);
    signal.addEventListener("abort", aborted, { once: true });
  });
}

/** Ends a server stream with an error status the client sees (destroy(err) would drop the status). */
function endWithError(call: grpc.ServerWritableStream<FetchPieceRequest, PieceChunk>, err: unknown): void {
  if (call.writableEnded || call.destroyed || call.cancelled) return;
  call.emit("error", toGrpcError(err));
}
