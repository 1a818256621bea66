// The requesting side of the peer wire: one mutual-TLS channel per peer address, made with the
// transport's factory and this node's certificate, so the serving peer sees who asks; Have and
// FetchPiece with the server's refusal codes preserved; a download rate limit for the whole node.
// It does not check piece hashes: the downloader does, against the plan, for every piece it gets.
import * as grpc from "@grpc/grpc-js";
import type { Clock } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";
import { BlobsClient, type HaveResponse, type PieceChunk } from "../../proto/shoal/v1/blobs.js";
import { createSecureChannel, type SecureChannel } from "../../transport/client.js";
import { fromGrpcError } from "../../transport/errors.js";
import type { NodeRole } from "../../transport/identity.js";
import type { RevocationState } from "../../transport/revocation.js";
import { checkRate, TokenBucket } from "./rate-limit.js";

export const DEFAULT_PEER_TIMEOUT_MS = 30_000;
/** A peer that streams more than this for one piece is serving garbage (pieces are 4 MiB by default). */
export const DEFAULT_MAX_PIECE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_PEER_CHANNELS = 256;
/** A Have answer for more pieces than this is not an answer (1 TiB of 4 MiB pieces). */
export const MAX_PIECE_COUNT = 262_144;
/** Two default pieces in flight per connection before the server waits for a window update. */
export const PEER_FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;
/** Burst of the download bucket: about one server chunk. */
const DOWNLOAD_BURST_BYTES = 256 * 1024;

export interface PeerClientOptions {
  clusterId: string;
  /** The roots peers' certificates must chain to (PEM bundle); replace with updateTrust after a root CA rotation. */
  rootCaPem: string;
  /** This node's certificate and key (PEM); replace with updateIdentity after renewal. */
  identity: { certPem: string; keyPem: string };
  /** When given, a peer whose certificate is on the list is refused as a server too. */
  revocation?: RevocationState;
  clock: Clock;
  /** The role (certificate OU) of the node at an address; "swarm-worker" unless told. */
  roleOf?: (addr: string) => NodeRole;
  /** Download limit of the whole client, bytes per second; 0 (the default) is unlimited. */
  downloadBytesPerSec?: number;
  /** Channels kept open at once; the least recently used one is closed beyond it. */
  maxChannels?: number;
}

export interface PeerCallOptions {
  /** On the injected clock; DEFAULT_PEER_TIMEOUT_MS unless told. TIMEOUT when it passes. */
  timeoutMs?: number;
  /** Aborting cancels the call; the promise rejects with the signal's reason (a ShoalError if it is one). */
  signal?: AbortSignal;
}

export interface FetchPieceOptions extends PeerCallOptions {
  /** More bytes than this from the peer is PIECE_CORRUPT (DEFAULT_MAX_PIECE_BYTES). */
  maxBytes?: number;
}

export interface PeerHave {
  pieceSize: number;
  pieceCount: number;
  have: Uint8Array;
}

function timeoutOf(opts: PeerCallOptions): number {
  const ms = opts.timeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
  if (!Number.isSafeInteger(ms) || ms < 1) throw new ShoalError("INVALID_ARGUMENT", `timeoutMs must be a positive integer, got ${ms}`);
  return ms;
}

function abortError(signal: AbortSignal): ShoalError {
  const reason: unknown = signal.reason;
  return reason instanceof ShoalError ? reason : new ShoalError("UNAVAILABLE", "the peer call was cancelled", { cause: reason });
}

/** A Have answer from a peer is input: check its shape before anyone indexes into it. */
function checkedHave(addr: string, res: HaveResponse): PeerHave {
  const bad = (what: string): ShoalError => new ShoalError("INVALID_ARGUMENT", `the peer at ${addr} answered Have with ${what}`);
  if (res.pieceSize < 1) throw bad("a piece size of 0");
  if (res.pieceCount > MAX_PIECE_COUNT) throw bad(`${res.pieceCount} pieces, above ${MAX_PIECE_COUNT}`);
  if (res.have.length !== Math.ceil(res.pieceCount / 8)) throw bad(`a bitfield of ${res.have.length} bytes for ${res.pieceCount} pieces`);
  const spare = res.pieceCount % 8;
  if (spare !== 0 && (res.have[res.have.length - 1]! & (0xff >> spare)) !== 0) throw bad("bits set past the last piece");
  return { pieceSize: res.pieceSize, pieceCount: res.pieceCount, have: new Uint8Array(res.have) };
}

export class PeerClient {
  private identity: { certPem: string; keyPem: string };
  private rootCaPem: string;
  private readonly channels = new Map<string, SecureChannel>();
  private readonly download: TokenBucket;
  private readonly maxChannels: number;
  private closed = false;
  private readonly unsubscribe: () => void;
  private bytesReceived = 0;
  private waitingForRate = 0;

  constructor(private readonly opts: PeerClientOptions) {
    this.identity = opts.identity;
    this.rootCaPem = opts.rootCaPem;
    const downloadBytesPerSec = opts.downloadBytesPerSec ?? 0;
    checkRate(downloadBytesPerSec, "the download rate limit");
    this.download = new TokenBucket(downloadBytesPerSec, DOWNLOAD_BURST_BYTES, opts.clock);
    this.maxChannels = opts.maxChannels ?? DEFAULT_MAX_PEER_CHANNELS;
    if (!Number.isSafeInteger(this.maxChannels) || this.maxChannels < 1) {
      throw new ShoalError("INVALID_ARGUMENT", `maxChannels must be a positive integer, got ${this.maxChannels}`);
    }
    // The revocation list is checked at the handshake, and an open channel does not shake hands
    // again: when the list grows, every channel is closed, so the next call to a peer revoked since
    // it was opened is refused instead of going on over the old connection. Revocations are rare;
    // the other peers only pay one handshake each.
    this.unsubscribe =
      opts.revocation?.subscribe((change) => {
        if (change.addedNodeIds.length > 0 || change.addedSerials.length > 0) this.dropChannels();
      }) ?? (() => undefined);
  }

  /** Which pieces of `digest` the peer at `addr` holds (verified ones only). */
  async have(addr: string, digest: string, grant: Uint8Array, opts: PeerCallOptions = {}): Promise<PeerHave> {
    const timeoutMs = timeoutOf(opts);
    const client = this.clientFor(addr);
    return await new Promise<PeerHave>((resolve, reject) => {
      const settle = this.settler(opts, resolve, reject);
      if (settle.done) return;
      const call = client.have({ digest, grant: Buffer.from(grant) }, new grpc.Metadata(), (err, res) => {
        if (err) settle.fail(fromGrpcError(err));
        else {
          try {
            settle.ok(checkedHave(addr, res));
          } catch (e) {
            settle.fail(e as ShoalError);
          }
        }
      });
      settle.onCancel(timeoutMs, () => call.cancel());
    });
  }

  /** The whole piece `index` of `digest` from the peer at `addr`, unverified. */
  async fetchPiece(addr: string, digest: string, index: number, grant: Uint8Array, opts: FetchPieceOptions = {}): Promise<Buffer> {
    const timeoutMs = timeoutOf(opts);
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_PIECE_BYTES;
    if (!Number.isSafeInteger(index) || index < 0 || index > 0xffffffff) throw new ShoalError("INVALID_ARGUMENT", `piece index must be a uint32, got ${index}`);
    const client = this.clientFor(addr);
    return await new Promise<Buffer>((resolve, reject) => {
      const settle = this.settler(opts, resolve, reject);
      if (settle.done) return;
      const call = client.fetchPiece({ digest, index, grant: Buffer.from(grant) });
      const chunks: Buffer[] = [];
      let received = 0;
      const rateSignal = new AbortController();
      settle.onCancel(timeoutMs, () => {
        rateSignal.abort(new ShoalError("UNAVAILABLE", "the piece fetch ended"));
        call.cancel();
      });
      call.on("data", (chunk: PieceChunk) => {
        received += chunk.data.length;
        if (received > maxBytes) {
          settle.fail(new ShoalError("PIECE_CORRUPT", `the peer at ${addr} sent more than ${maxBytes} bytes for piece ${index}`));
          return;
        }
        chunks.push(chunk.data);
        this.bytesReceived += chunk.data.length;
        if (this.download.unlimited) return;
        // Reading slower makes HTTP/2 flow control slow the sender: the limit reaches the wire.
        call.pause();
        this.waitingForRate++;
        this.download.take(chunk.data.length, rateSignal.signal).then(
          () => {
            this.waitingForRate--;
            call.resume();
          },
          () => {
            this.waitingForRate--;
          },
        );
      });
      call.on("error", (err) => settle.fail(fromGrpcError(err)));
      call.on("end", () => settle.ok(Buffer.concat(chunks, received)));
    });
  }

  stats(): { bytesReceived: number; waitingForRate: number; channels: number } {
    return { bytesReceived: this.bytesReceived, waitingForRate: this.waitingForRate, channels: this.channels.size };
  }

  /** After renewal: new calls use the new certificate; calls in flight finish on their channels. */
  updateIdentity(certPem: string, keyPem: string): void {
    this.identity = { certPem, keyPem };
    this.dropChannels();
  }

  /**
   * After a root CA rotation changed the roots this node trusts: new channels check the peers'
   * certificates against `rootCaPem` (both roots during the rotation, the new one alone after it);
   * calls in flight finish on their channels.
   */
  updateTrust(rootCaPem: string): void {
    if (rootCaPem === this.rootCaPem) return;
    this.rootCaPem = rootCaPem;
    this.dropChannels();
  }

  /** Forgets a peer (e.g. excluded from the job). */
  closePeer(addr: string): void {
    this.channels.get(addr)?.close();
    this.channels.delete(addr);
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    this.dropChannels();
  }

  private dropChannels(): void {
    for (const ch of this.channels.values()) ch.close();
    this.channels.clear();
  }

  private clientFor(addr: string): BlobsClient {
    if (this.closed) throw new ShoalError("UNAVAILABLE", "the peer client is closed");
    let ch = this.channels.get(addr);
    if (ch !== undefined) {
      // Move to the back: the map's order is least recently used first.
      this.channels.delete(addr);
    } else {
      ch = createSecureChannel(addr, {
        rootCaPem: this.rootCaPem,
        certPem: this.identity.certPem,
        keyPem: this.identity.keyPem,
        expectServerRole: this.opts.roleOf?.(addr) ?? "swarm-worker",
        clusterId: this.opts.clusterId,
        ...(this.opts.revocation ? { revocation: this.opts.revocation } : {}),
        flowControlWindowBytes: PEER_FLOW_CONTROL_WINDOW_BYTES,
      });
    }
    this.channels.set(addr, ch);
    while (this.channels.size > this.maxChannels) {
      const [oldest, channel] = this.channels.entries().next().value as [string, SecureChannel];
      channel.close();
      this.channels.delete(oldest);
    }
    return ch.client(BlobsClient);
  }

  /** Settles a call once: on its answer, its timeout (clock), or the caller's abort, cancelling the rest. */
  private settler<T>(opts: PeerCallOptions, resolve: (v: T) => void, reject: (e: ShoalError) => void) {
    let done = false;
    let cancelCall: () => void = () => undefined;
    let timer: { cancel(): void } | undefined;
    const onAbort = (): void => finish(() => reject(abortError(opts.signal!)), true);
    const finish = (action: () => void, cancel: boolean): void => {
      if (done) return;
      done = true;
      timer?.cancel();
      opts.signal?.removeEventListener("abort", onAbort);
      if (cancel) cancelCall();
      action();
    };
    if (opts.signal?.aborted) {
      done = true;
      reject(abortError(opts.signal));
    } else {
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    }
    return {
      get done() {
        return done;
      },
      ok: (v: T) => finish(() => resolve(v), false),
      fail: (e: ShoalError) => finish(() => reject(e), true),
      onCancel: (timeoutMs: number, cancel: () => void) => {
        cancelCall = cancel;
        if (done) return;
        timer = this.opts.clock.setTimeout(() => finish(() => reject(new ShoalError("TIMEOUT", `the peer did not answer within ${timeoutMs} ms`)), true), timeoutMs);
      },
    };
  }
}
