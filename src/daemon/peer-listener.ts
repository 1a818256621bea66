// Where a node serves its pieces to the peers of its zone (DESIGN.md §3 rule 9, §8): the Blobs
// service over mutual TLS at the node's advertise address. A manager mounts it on its own TLS
// server (ManagerOptions.mountServices), whose interceptor checks every caller against the
// manager's revocation list; a pure worker, which has no server of its own, gets one here on
// --listen-addr that serves nothing but Blobs and checks callers against the list its agent
// receives. Either way the PeerServer adds the zone and the grant, and its zone follows the node's
// certificate (setZone after a renewal). A root CA rotation changes what the node trusts without a
// restart: the grant's signer is checked against the node's current roots on every request, and
// the worker's listener takes the new roots and its new certificate for new handshakes
// (updateTrust, updateIdentity; a manager's own listener does the same in the manager).
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import { parseNodeCertificate, RootCA, splitPemBundle } from "../ca/index.js";
import { PeerServer, type PieceSource } from "../agent/p2p/peer-server.js";
import { BlobsService } from "../proto/shoal/v1/blobs.js";
import type { MethodPolicy } from "../transport/authz.js";
import type { PeerVerifier } from "../transport/identity.js";
import type { RevocationState } from "../transport/revocation.js";
import { createSecureServer, type NodeIdentityPem, type SecureServer } from "../transport/server.js";

export interface PeerServiceOptions {
  clusterId: string;
  /** The node's trusted root CA bundle, read on every request (it follows a root CA rotation). */
  rootCaPem: () => string;
  /** The node's certificate: the zone it serves is the one its certificate carries. */
  certPem: string;
  source: PieceSource;
  /** Bytes per second over all of its streams; 0 is unlimited (`--p2p-upload-rate`). */
  uploadBytesPerSec: number;
  /** Whether this node seeds a job with the blob (the PrefetchRunner's isSeeding). */
  isSeeding: (digest: string) => boolean;
  clock: Clock;
  logger: Logger;
}

/** A seed hides a piece it sent for this many piece times at its upload rate (as cluster-sim's DEFAULT_SEED_HIDE_SERVED_PIECES). */
export const SEED_HIDE_PIECES = 90;

/**
 * How long a seed hides a piece it began sending: long enough for the first receiver to pass it on.
 * Only with an upload limit: without one the seed's upload is not what the zone waits for.
 */
export function seedHideMs(pieceSize: number, uploadBytesPerSec: number): number {
  return uploadBytesPerSec > 0 ? Math.round((SEED_HIDE_PIECES * pieceSize * 1000) / uploadBytesPerSec) : 0;
}

/** The roots of a PEM bundle that `bundlePem` returns, parsed again only when the bundle changes. */
export function currentRoots(bundlePem: () => string): () => readonly RootCA[] {
  let cache: { pem: string; roots: RootCA[] } | undefined;
  return () => {
    const pem = bundlePem();
    if (cache?.pem !== pem) cache = { pem, roots: splitPemBundle(pem).map((p) => RootCA.fromCertOnly(p)) };
    return cache.roots;
  };
}

/** A PeerServer on `server`, refusing callers on `revocation` (its streams end when one is added). */
export function mountPeerService(server: SecureServer, revocation: RevocationState, opts: PeerServiceOptions): PeerServer {
  const peer = new PeerServer({
    clusterId: opts.clusterId,
    zone: parseNodeCertificate(opts.certPem).zone,
    rootCA: currentRoots(opts.rootCaPem),
    source: opts.source,
    peerOf: (call) => server.peerOf(call),
    revocation,
    clock: opts.clock,
    logger: opts.logger,
    uploadBytesPerSec: opts.uploadBytesPerSec,
    isSeeding: opts.isSeeding,
    seedHideMs: (pieceSize) => seedHideMs(pieceSize, opts.uploadBytesPerSec),
  });
  peer.mount(server);
  return peer;
}

/** Blobs only: a worker's listener answers no other RPC, not even the CA's bootstrap calls. */
function blobsOnly(): Map<string, MethodPolicy> {
  return new Map(Object.values(BlobsService).map((m) => [m.path, { roles: ["swarm-manager", "swarm-worker"] } as MethodPolicy]));
}

export class WorkerPeerListener {
  private constructor(
    readonly server: SecureServer,
    readonly peer: PeerServer,
    readonly port: number,
  ) {}

  static async start(opts: PeerServiceOptions & { listenAddr: string; identity: NodeIdentityPem; verifier: PeerVerifier; revocation: RevocationState }): Promise<WorkerPeerListener> {
    const server = createSecureServer({
      clusterId: opts.clusterId,
      rootCaPem: opts.rootCaPem(),
      identity: opts.identity,
      verifier: opts.verifier,
      revocation: opts.revocation,
      policies: blobsOnly(),
      clock: opts.clock,
    });
    const peer = mountPeerService(server, opts.revocation, opts);
    try {
      const port = await server.listen(opts.listenAddr, "open");
      return new WorkerPeerListener(server, peer, port);
    } catch (err) {
      peer.close();
      await server.shutdown(0);
      throw err;
    }
  }

  /** After a renewal: the new certificate for new handshakes, and the zone it carries. */
  updateIdentity(identity: NodeIdentityPem): void {
    this.server.updateIdentity(identity.certPem, identity.keyPem);
    this.peer.setZone(parseNodeCertificate(identity.certPem).zone);
  }

  /**
   * After the node's trusted roots changed (a root CA rotation): new handshakes offer and check
   * these roots. The grant check reads them itself (PeerServiceOptions.rootCaPem), and callers'
   * certificates are checked by the agent's verifier, which follows the same roots.
   */
  updateTrust(rootCaPem: string): void {
    this.server.updateTrust(rootCaPem);
  }

  async close(): Promise<void> {
    this.peer.close();
    await this.server.shutdown(500);
  }
}
