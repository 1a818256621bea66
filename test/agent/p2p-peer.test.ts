// The P2P peer over real gRPC and mutual TLS on 127.0.0.1, with certificates issued by src/ca's
// RootCA: a zone-a worker serves an in-memory blob; a zone-a requester with a good grant gets the
// right bytes, and every kind of requester DESIGN.md §3 rule 9 excludes is refused with its own code.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, KeyObject, X509Certificate } from "node:crypto";
import { Writable } from "node:stream";
import { pino } from "pino";
import { ManualClock, systemClock, type Clock } from "../../src/base/clock.js";
import { isShoalError, ShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, managerGrantSigner, RootCA, signGrant, type GrantSigner, type PrefetchGrant } from "../../src/ca/index.js";
import { caPeerVerifier, type NodeRole } from "../../src/transport/identity.js";
import { RevocationState } from "../../src/transport/revocation.js";
import { createSecureServer, type SecureServer } from "../../src/transport/server.js";
import { PeerClient, type PeerClientOptions } from "../../src/agent/p2p/peer-client.js";
import { PeerServer, type PeerServerOptions, type PieceSource } from "../../src/agent/p2p/peer-server.js";
import { TokenBucket } from "../../src/agent/p2p/rate-limit.js";

const PIECE_SIZE = 256 * 1024;
const CHUNK_BYTES = 64 * 1024;
const HOUR_MS = 3600_000;

interface Node {
  nodeId: string;
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

async function issueNode(root: RootCA, clusterId: string, zone: string, opts: { role?: NodeRole; clock?: Clock; validityMs?: number; nodeId?: string } = {}): Promise<Node> {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const nodeId = opts.nodeId ?? newId();
  const issued = root.issueNodeCertificate({
    csrPem,
    nodeId,
    clusterId,
    role: opts.role ?? "swarm-worker",
    zone,
    clock: opts.clock ?? systemClock,
    ...(opts.validityMs !== undefined ? { validityMs: opts.validityMs } : {}),
  });
  return { nodeId, certPem: issued.certPem, keyPem: (privateKey as KeyObject).export({ type: "pkcs8", format: "pem" }).toString(), notAfter: issued.notAfter };
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** A blob held whole in memory, 2.5 pieces long, every piece verified. */
function memoryBlob(): { blob: Buffer; digest: string; pieces: Buffer[]; source: PieceSource } {
  const blob = Buffer.alloc(PIECE_SIZE * 2 + PIECE_SIZE / 2);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 31 + (i >> 8)) & 0xff;
  const digest = sha256(blob);
  const pieces = [0, 1, 2].map((i) => blob.subarray(i * PIECE_SIZE, Math.min(blob.length, (i + 1) * PIECE_SIZE)));
  const source: PieceSource = {
    held: (d) => (d === digest ? { pieceSize: PIECE_SIZE, pieceCount: 3, have: Uint8Array.of(0b1110_0000) } : undefined),
    readPiece: async (d, index) => {
      const piece = d === digest ? pieces[index] : undefined;
      if (piece === undefined) throw new ShoalError("NOT_FOUND", "not held");
      return Buffer.from(piece);
    },
  };
  return { blob, digest, pieces, source };
}

/** Log lines of every server and client, to show no grant bytes reach them. */
const logLines: string[] = [];
const logger = pino(
  { level: "debug" },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  }),
);

interface Peer {
  server: SecureServer;
  peer: PeerServer;
  addr: string;
  revocation: RevocationState;
}

async function startPeer(
  root: RootCA,
  clusterId: string,
  node: Node,
  zone: string,
  source: PieceSource,
  opts: { clock?: Clock } & Partial<PeerServerOptions> = {},
): Promise<Peer> {
  const clock = opts.clock ?? systemClock;
  const revocation = opts.revocation ?? new RevocationState();
  const verifyOnly = RootCA.fromCertOnly(root.certPem);
  const server = createSecureServer({
    clusterId,
    rootCaPem: root.certPem,
    identity: { certPem: node.certPem, keyPem: node.keyPem },
    verifier: caPeerVerifier({ rootCaPem: root.certPem, clusterId, clock, revocation }),
    revocation,
    clock,
  });
  const peer = new PeerServer({
    clusterId,
    zone,
    rootCA: verifyOnly,
    source,
    peerOf: (call) => server.peerOf(call),
    revocation,
    clock,
    logger,
    chunkBytes: CHUNK_BYTES,
    ...opts,
  });
  peer.mount(server);
  const port = await server.listen("127.0.0.1:0", "open");
  return { server, peer, addr: `127.0.0.1:${port}`, revocation };
}

function clientFor(root: RootCA, clusterId: string, node: Node, extra: Partial<PeerClientOptions> = {}): PeerClient {
  return new PeerClient({ clusterId, rootCaPem: root.certPem, identity: { certPem: node.certPem, keyPem: node.keyPem }, clock: systemClock, ...extra });
}

async function refusal(p: Promise<unknown>): Promise<ShoalError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ShoalError, `expected a ShoalError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a refusal, the call succeeded");
}

async function assertRefused(p: Promise<unknown>, code: ShoalErrorCode): Promise<ShoalError> {
  const err = await refusal(p);
  assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
  return err;
}

/** Liveness only: polls until `probe` holds, failing after a generous bound. */
async function waitFor(probe: () => boolean, what: string, boundMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!probe()) {
    if (Date.now() - start > boundMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function settledFlag(p: Promise<unknown>): () => boolean {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  return () => settled;
}

describe("P2P peer over mutual TLS", () => {
  let root: RootCA;
  let otherRoot: RootCA;
  const clusterId = newId();
  const otherClusterId = newId();
  const blob = memoryBlob();
  let serverNode: Node;
  let requester: Node;
  let peer: Peer;
  const grants: Buffer[] = [];
  const clients: PeerClient[] = [];
  const peers: Peer[] = [];

  const grantFor = (nodeId: string, overrides: Partial<PrefetchGrant> = {}, signer?: GrantSigner): Buffer => {
    const bytes = signGrant(signer ?? root, {
      jobId: "job-1",
      clusterId,
      zone: "zone-a",
      nodeId,
      blobDigest: blob.digest,
      expiresAtMs: Date.now() + 5 * 60_000,
      ...overrides,
    });
    grants.push(bytes);
    return bytes;
  };
  const client = (node: Node, extra: Partial<PeerClientOptions> = {}, r: RootCA = root, cid: string = clusterId): PeerClient => {
    const c = clientFor(r, cid, node, extra);
    clients.push(c);
    return c;
  };
  const start = async (...args: Parameters<typeof startPeer>): Promise<Peer> => {
    const p = await startPeer(...args);
    peers.push(p);
    return p;
  };

  before(async () => {
    root = await createRootCA({ clock: systemClock });
    otherRoot = await createRootCA({ clock: systemClock });
    serverNode = await issueNode(root, clusterId, "zone-a");
    requester = await issueNode(root, clusterId, "zone-a");
    peer = await start(root, clusterId, serverNode, "zone-a", blob.source);
  });

  after(async () => {
    for (const c of clients) c.close();
    for (const p of peers) {
      p.peer.close();
      await p.server.shutdown(200);
    }
  });

  test("a zone-a requester with a good grant gets every piece and the bitfield", async () => {
    const c = client(requester);
    const grant = grantFor(requester.nodeId);
    const have = await c.have(peer.addr, blob.digest, grant);
    assert.deepEqual(have, { pieceSize: PIECE_SIZE, pieceCount: 3, have: Uint8Array.of(0b1110_0000) });
    const pieces = await Promise.all([0, 1, 2].map((i) => c.fetchPiece(peer.addr, blob.digest, i, grant)));
    for (const [i, piece] of pieces.entries()) assert.equal(sha256(piece), sha256(blob.pieces[i]!), `piece ${i}`);
    assert.ok(Buffer.concat(pieces).equals(blob.blob));
    assert.equal(sha256(Buffer.concat(pieces)), blob.digest);
    // A manager may fetch too (both roles): its certificate passes the transport's role check.
    const manager = await issueNode(root, clusterId, "zone-a", { role: "swarm-manager" });
    const piece = await client(manager).fetchPiece(peer.addr, blob.digest, 2, grantFor(manager.nodeId));
    assert.ok(piece.equals(blob.pieces[2]!));
  });

  test("a blob or piece the peer does not hold is NOT_FOUND; an index past the end is INVALID_ARGUMENT", async () => {
    const c = client(requester);
    const other = sha256(Buffer.from("another layer"));
    await assertRefused(c.have(peer.addr, other, grantFor(requester.nodeId, { blobDigest: other })), "NOT_FOUND");
    await assertRefused(c.fetchPiece(peer.addr, other, 0, grantFor(requester.nodeId, { blobDigest: other })), "NOT_FOUND");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 3, grantFor(requester.nodeId)), "INVALID_ARGUMENT");
    const partial = await start(root, clusterId, serverNode, "zone-a", {
      held: (d) => (d === blob.digest ? { pieceSize: PIECE_SIZE, pieceCount: 3, have: Uint8Array.of(0b1000_0000) } : undefined),
      readPiece: blob.source.readPiece,
    });
    await assertRefused(c.fetchPiece(partial.addr, blob.digest, 1, grantFor(requester.nodeId)), "NOT_FOUND");
  });

  test("a zone-b certificate of this cluster is refused with PEER_WRONG_ZONE", async () => {
    const zoneB = await issueNode(root, clusterId, "zone-b");
    const c = client(zoneB);
    // Even with a grant that names it and zone a (which the leader would never issue).
    const grant = grantFor(zoneB.nodeId);
    const err = await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grant), "PEER_WRONG_ZONE");
    assert.match(err.message, /zone-b/);
    await assertRefused(c.have(peer.addr, blob.digest, grant), "PEER_WRONG_ZONE");
  });

  test("a certificate of another cluster: CERT_WRONG_CLUSTER when our CA signed it, UNAUTHENTICATED from another CA", async () => {
    // Same root, other O: TLS verifies it, so the transport's interceptor sees it and names the cluster.
    const sameCaOtherCluster = await issueNode(root, otherClusterId, "zone-a");
    await assertRefused(client(sameCaOtherCluster).fetchPiece(peer.addr, blob.digest, 0, grantFor(sameCaOtherCluster.nodeId)), "CERT_WRONG_CLUSTER");
    // A real other cluster has its own root CA. On the "open" listener TLS asks for a certificate
    // without requiring one, and grpc-js hands a call the certificate only when OpenSSL verified it,
    // so a foreign-CA certificate reaches the interceptor as "no certificate": UNAUTHENTICATED (the
    // transport's code for missing, expired or untrusted; CERT_UNTRUSTED is the client-side code).
    const foreign = await issueNode(otherRoot, clusterId, "zone-a");
    const err = await assertRefused(client(foreign).fetchPiece(peer.addr, blob.digest, 0, grantFor(foreign.nodeId, {}, otherRoot)), "UNAUTHENTICATED");
    assert.match(err.message, /not issued by this cluster's root CA/);
  });

  test("an expired certificate: CERT_EXPIRED by the peer's clock, UNAUTHENTICATED once TLS itself sees it expired", async () => {
    // Valid for TLS (the wall clock) but past notAfter on the serving node's injected clock: the
    // transport's date check refuses it with its own code.
    const shortLived = await issueNode(root, clusterId, "zone-a", { validityMs: HOUR_MS });
    const aheadClock = new ManualClock(shortLived.notAfter.getTime() + 60_000);
    const ahead = await start(root, clusterId, serverNode, "zone-a", blob.source, { clock: aheadClock });
    await assertRefused(client(shortLived).fetchPiece(ahead.addr, blob.digest, 0, grantFor(shortLived.nodeId)), "CERT_EXPIRED");
    // Issued by a clock in the past so it is expired for everyone: OpenSSL does not verify it, grpc-js
    // hides it, and the call is UNAUTHENTICATED (same path as a foreign certificate).
    const expired = await issueNode(root, clusterId, "zone-a", { validityMs: HOUR_MS, clock: new ManualClock(Date.now() - 3 * HOUR_MS) });
    assert.ok(expired.notAfter.getTime() < Date.now());
    await assertRefused(client(expired).fetchPiece(peer.addr, blob.digest, 0, grantFor(expired.nodeId)), "UNAUTHENTICATED");
  });

  test("grants: another blob's, another node's, an expired one and a forged one each have their own code", async () => {
    const c = client(requester);
    const otherBlob = sha256(Buffer.from("another layer"));
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grantFor(requester.nodeId, { blobDigest: otherBlob })), "GRANT_WRONG_BLOB");
    const someoneElse = newId();
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grantFor(someoneElse)), "GRANT_WRONG_NODE");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grantFor(requester.nodeId, { expiresAtMs: Date.now() - 1 })), "GRANT_EXPIRED");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grantFor(requester.nodeId, {}, otherRoot)), "GRANT_INVALID");
    const tampered = Buffer.from(grantFor(requester.nodeId));
    tampered[tampered.length - 70] = tampered[tampered.length - 70]! ^ 1;
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, tampered), "GRANT_INVALID");
    await assertRefused(c.have(peer.addr, blob.digest, Buffer.alloc(0)), "GRANT_INVALID");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grantFor(requester.nodeId, { zone: "zone-b" })), "GRANT_WRONG_ZONE");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, grantFor(requester.nodeId, { clusterId: otherClusterId })), "GRANT_WRONG_CLUSTER");
    assert.equal(peer.peer.stats().openStreams, 0, "refused calls hold no in-flight slot");
  });

  test("revoking the requester mid-stream ends its stream with CERT_REVOKED, and later calls are refused", async () => {
    // A slow peer (upload limit on a manual clock) so the stream is certainly open mid-piece.
    const clock = new ManualClock(Date.now());
    const slow = await start(root, clusterId, serverNode, "zone-a", blob.source, { clock, uploadBytesPerSec: CHUNK_BYTES });
    const victim = await issueNode(root, clusterId, "zone-a");
    const c = client(victim);
    const grant = grantFor(victim.nodeId);
    const fetching = c.fetchPiece(slow.addr, blob.digest, 0, grant);
    await waitFor(() => slow.peer.stats().bytesSent === CHUNK_BYTES && slow.peer.stats().waitingForRate === 1, "the first chunk to go out");
    slow.revocation.revoke({ nodeIds: [victim.nodeId] });
    await assertRefused(fetching, "CERT_REVOKED");
    await waitFor(() => slow.peer.stats().openStreams === 0, "the revoked stream's slot to be freed");
    assert.equal(slow.peer.stats().bytesSent, CHUNK_BYTES, "nothing more was sent to the revoked node");
    await assertRefused(c.have(slow.addr, blob.digest, grant), "CERT_REVOKED");
    await assertRefused(c.fetchPiece(slow.addr, blob.digest, 1, grant), "CERT_REVOKED");
    // By serial as well as by node ID.
    const bySerial = await issueNode(root, clusterId, "zone-a");
    const serial = new X509Certificate(bySerial.certPem).serialNumber;
    slow.revocation.revoke({ serials: [serial] });
    await assertRefused(client(bySerial).have(slow.addr, blob.digest, grantFor(bySerial.nodeId)), "CERT_REVOKED");
  });

  test("in-flight streams are bounded per requesting node: PEER_OVERLOADED beyond it, other nodes still served", async () => {
    const clock = new ManualClock(Date.now());
    const slow = await start(root, clusterId, serverNode, "zone-a", blob.source, { clock, uploadBytesPerSec: CHUNK_BYTES, maxInFlightPerPeer: 2 });
    const c = client(requester);
    const grant = grantFor(requester.nodeId);
    const first = c.fetchPiece(slow.addr, blob.digest, 0, grant);
    const second = c.fetchPiece(slow.addr, blob.digest, 1, grant);
    await waitFor(() => slow.peer.stats().openStreams === 2, "two open streams");
    await assertRefused(c.fetchPiece(slow.addr, blob.digest, 2, grant), "PEER_OVERLOADED");
    // The bound is per node: another requester gets a slot.
    const other = await issueNode(root, clusterId, "zone-a");
    const third = client(other).fetchPiece(slow.addr, blob.digest, 2, grantFor(other.nodeId));
    await waitFor(() => slow.peer.stats().openStreams === 3, "the other node's stream");
    // Let the upload limit pass everything: 2.5 pieces at one chunk per second.
    for (let i = 0; i < 20 && slow.peer.stats().openStreams > 0; i++) {
      clock.advance(5_000);
      await new Promise((r) => setTimeout(r, 20));
    }
    const [a, b, d] = await Promise.all([first, second, third]);
    assert.ok(a.equals(blob.pieces[0]!) && b.equals(blob.pieces[1]!) && d.equals(blob.pieces[2]!));
    // With the slots free again, the first node may fetch once more.
    const again = c.fetchPiece(slow.addr, blob.digest, 2, grant);
    for (let i = 0; i < 20 && !settledFlag(again)(); i++) {
      clock.advance(5_000);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok((await again).equals(blob.pieces[2]!));
  });

  test("the upload limit holds chunks back until the peer's clock lets them go", async () => {
    const clock = new ManualClock(Date.now());
    const slow = await start(root, clusterId, serverNode, "zone-a", blob.source, { clock, uploadBytesPerSec: CHUNK_BYTES });
    const fetching = client(requester).fetchPiece(slow.addr, blob.digest, 0, grantFor(requester.nodeId));
    const settled = settledFlag(fetching);
    await waitFor(() => slow.peer.stats().waitingForRate === 1, "the stream to wait for the limit");
    assert.equal(slow.peer.stats().bytesSent, CHUNK_BYTES, "one chunk (the burst) went at once");
    assert.equal(settled(), false);
    clock.advance(1000);
    await waitFor(() => slow.peer.stats().bytesSent === 2 * CHUNK_BYTES && slow.peer.stats().waitingForRate === 1, "one more chunk per second");
    clock.advance(2000);
    assert.ok((await fetching).equals(blob.pieces[0]!));
  });

  test("the client's download limit holds reading back until its clock lets it go", async () => {
    const clock = new ManualClock(Date.now());
    // The client's burst is 256 KiB (one piece here): two pieces at once outrun it, so reading waits.
    const c = client(requester, { clock, downloadBytesPerSec: CHUNK_BYTES });
    const grant = grantFor(requester.nodeId);
    const both = Promise.all([0, 1].map((i) => c.fetchPiece(peer.addr, blob.digest, i, grant)));
    const settled = settledFlag(both);
    await waitFor(() => c.stats().waitingForRate >= 1, "reading to wait once the bytes outrun the burst");
    assert.equal(settled(), false);
    const received = c.stats().bytesReceived;
    assert.ok(received > 2 * CHUNK_BYTES && received < 2 * PIECE_SIZE, `received ${received}`);
    for (let i = 0; i < 40 && !settled(); i++) {
      clock.advance(1000);
      await new Promise((r) => setTimeout(r, 20));
    }
    const [p0, p1] = await both;
    assert.ok(p0!.equals(blob.pieces[0]!) && p1!.equals(blob.pieces[1]!));
  });

  test("the corrupt-piece test hook makes the peer serve other bytes than the piece's hash", async () => {
    const bad = await start(root, clusterId, serverNode, "zone-a", blob.source, {
      corruptPiece: (_digest, index, bytes) => {
        const out = Buffer.from(bytes);
        out[index] = out[index]! ^ 0xff;
        return out;
      },
    });
    const piece = await client(requester).fetchPiece(bad.addr, blob.digest, 1, grantFor(requester.nodeId));
    assert.equal(piece.length, blob.pieces[1]!.length);
    assert.notEqual(sha256(piece), sha256(blob.pieces[1]!));
    assert.equal(piece[1], blob.pieces[1]![1]! ^ 0xff);
  });

  test("the client refuses a peer's bad answers: an oversized piece is PIECE_CORRUPT, a malformed bitfield INVALID_ARGUMENT", async () => {
    const bloated = await start(root, clusterId, serverNode, "zone-a", blob.source, { corruptPiece: (_d, _i, bytes) => Buffer.concat([bytes, bytes]) });
    const c = client(requester);
    const grant = grantFor(requester.nodeId);
    await assertRefused(c.fetchPiece(bloated.addr, blob.digest, 0, grant, { maxBytes: PIECE_SIZE }), "PIECE_CORRUPT");
    const liar = await start(root, clusterId, serverNode, "zone-a", {
      // Three pieces, but a bit set for a fourth.
      held: (d) => (d === blob.digest ? { pieceSize: PIECE_SIZE, pieceCount: 3, have: Uint8Array.of(0b1111_0000) } : undefined),
      readPiece: blob.source.readPiece,
    });
    const err = await assertRefused(c.have(liar.addr, blob.digest, grant), "INVALID_ARGUMENT");
    assert.match(err.message, /past the last piece/);
  });

  test("after renewal the client presents the new certificate on new channels", async () => {
    const before = await issueNode(root, clusterId, "zone-a");
    const c = client(before);
    const grant = grantFor(before.nodeId);
    assert.ok((await c.fetchPiece(peer.addr, blob.digest, 0, grant)).equals(blob.pieces[0]!));
    // The old certificate is revoked by serial; the renewed one (same node ID, new key) is accepted.
    const renewed = await issueNode(root, clusterId, "zone-a", { nodeId: before.nodeId });
    const oldSerial = new X509Certificate(before.certPem).serialNumber;
    c.updateIdentity(renewed.certPem, renewed.keyPem);
    peer.revocation.revoke({ serials: [oldSerial] });
    assert.ok((await c.fetchPiece(peer.addr, blob.digest, 1, grant)).equals(blob.pieces[1]!));
  });

  test("the client gives up on the injected clock with TIMEOUT and on its signal with the reason", async () => {
    const clock = new ManualClock(Date.now());
    const slow = await start(root, clusterId, serverNode, "zone-a", blob.source, { clock, uploadBytesPerSec: CHUNK_BYTES });
    const clientClock = new ManualClock(Date.now());
    const c = client(requester, { clock: clientClock });
    const grant = grantFor(requester.nodeId);
    const timed = c.fetchPiece(slow.addr, blob.digest, 0, grant, { timeoutMs: 5_000 });
    await waitFor(() => slow.peer.stats().waitingForRate === 1, "the stream to stall");
    clientClock.advance(5_000);
    await assertRefused(timed, "TIMEOUT");
    await waitFor(() => slow.peer.stats().openStreams === 0, "the server to see the cancel");
    const abort = new AbortController();
    const aborted = c.fetchPiece(slow.addr, blob.digest, 0, grant, { signal: abort.signal });
    await waitFor(() => slow.peer.stats().waitingForRate === 1, "the stream to stall");
    abort.abort(new ShoalError("UNAVAILABLE", "endgame: another peer delivered it"));
    const err = await assertRefused(aborted, "UNAVAILABLE");
    assert.match(err.message, /endgame/);
  });

  test("manager-signed (v2) grants, as a keyless cluster's leader makes them: served for a current manager's, refused for a worker's or a revoked manager's", async () => {
    const signerOf = (n: Node) => managerGrantSigner(n.certPem, n.keyPem);
    const leader = await issueNode(root, clusterId, "default", { role: "swarm-manager" });
    const c = client(requester);
    const v2 = (n: Node) => grantFor(requester.nodeId, {}, signerOf(n));
    assert.equal(v2(leader)[0], 2);
    const piece = await c.fetchPiece(peer.addr, blob.digest, 0, v2(leader));
    assert.ok(piece.equals(blob.pieces[0]!));
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, v2(await issueNode(root, clusterId, "zone-a"))), "GRANT_INVALID");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, v2(await issueNode(root, otherClusterId, "default", { role: "swarm-manager" }))), "GRANT_INVALID");
    await assertRefused(c.fetchPiece(peer.addr, blob.digest, 0, v2(await issueNode(otherRoot, clusterId, "default", { role: "swarm-manager" }))), "GRANT_INVALID");
    // A removed manager: on this peer's revocation list (its own peer, so the shared one stays clean).
    const own = await start(root, clusterId, serverNode, "zone-a", blob.source);
    const removed = await issueNode(root, clusterId, "default", { role: "swarm-manager" });
    const grant = v2(removed);
    assert.ok((await c.fetchPiece(own.addr, blob.digest, 1, grant)).equals(blob.pieces[1]!));
    own.revocation.revoke({ nodeIds: [removed.nodeId] });
    const refused = await assertRefused(c.fetchPiece(own.addr, blob.digest, 1, grant), "GRANT_INVALID");
    assert.match(refused.message, /current manager/);
  });

  test("no log line and no error message carries grant bytes", async () => {
    assert.ok(grants.length > 10);
    assert.ok(logLines.some((l) => l.includes("GRANT_WRONG_NODE")), "refusals were logged");
    const errors: string[] = [];
    const c = client(requester);
    for (const g of grants.slice(-5)) {
      const err = await refusal(c.fetchPiece(peer.addr, sha256(Buffer.from("x")), 0, g));
      errors.push(err.message, String(err.cause));
    }
    const text = logLines.join("\n") + errors.join("\n");
    for (const g of grants) {
      const signature = g.subarray(-64);
      for (const form of [g.toString("base64"), g.toString("hex"), signature.toString("base64"), signature.toString("hex"), g.toString("base64url")]) {
        assert.equal(text.includes(form), false, "a grant's bytes appear in a log line or error");
      }
    }
  });
});

test("token bucket: reservations queue behind each other's debt on the clock; abort hands the bytes back", async () => {
  const clock = new ManualClock(0);
  const bucket = new TokenBucket(1000, 1000, clock);
  await bucket.take(1000);
  let firstDone = false;
  let secondDone = false;
  const first = bucket.take(500).then(() => (firstDone = true));
  const second = bucket.take(500).then(() => (secondDone = true));
  clock.advance(499);
  await Promise.resolve();
  assert.equal(firstDone, false);
  clock.advance(1);
  await first;
  assert.equal(secondDone, false);
  clock.advance(500);
  await second;
  const abort = new AbortController();
  const waiting = bucket.take(2000, abort.signal);
  abort.abort(new ShoalError("UNAVAILABLE", "stop"));
  await assert.rejects(waiting, (e) => isShoalError(e, "UNAVAILABLE"));
  // The aborted 2000 bytes were handed back: after 1 s the full burst is available again.
  clock.advance(1000);
  let immediate = false;
  await bucket.take(1000).then(() => (immediate = true));
  assert.equal(immediate, true);
  assert.equal(clock.pendingTimers, 0);
  assert.throws(() => new TokenBucket(-1, 1, clock), (e) => isShoalError(e, "INVALID_ARGUMENT"));
});
