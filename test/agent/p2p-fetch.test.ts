// The blob downloader and the seed's pull over the real peer wire: real mutual-TLS PeerServers on
// 127.0.0.1 with certificates from src/ca's RootCA, a real piece store (content store in a temp
// dir) on every node, and the real docker-registry as the origin. A seed pulls from the registry
// while three peers fetch from it and from each other with the hashes published as the seed
// reports them; every node ends with the right blob. A peer serving corrupt bytes is reported
// once and excluded, a peer revoked mid-fetch is dropped (and refused by the others), the origin
// is used when there is no peer, there is a clear error when there is neither, and a cancelled
// download leaves nothing behind. Starts a registry child process.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { isShoalError, ShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { SeededRandom } from "../../src/base/random.js";
import { createRootCA, RootCA, signGrant } from "../../src/ca/index.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { PieceStore } from "../../src/agent/images/piece-store.js";
import { fetchBlob, seedBlob, type BlobFetchOptions, type OriginPull, type PeerAddress, type PieceSink } from "../../src/agent/p2p/blob-fetch.js";
import type { PeerServerOptions } from "../../src/agent/p2p/peer-server.js";
import { startPeerNode, type PeerNode } from "./p2p-fixture.js";
import { pullRange } from "../../src/oci/blob-pull.js";
import type { Descriptor } from "../../src/oci/manifest.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { ensureContainerTools } from "../../scripts/lib/container-tools.js";
import { startRegistry, type LocalRegistry } from "../../scripts/lib/registry.js";

const PIECE_SIZE = 64 * 1024;
const ZONE = "zone-a";
/** Every log line of every peer server: a server that failed to serve (level error) fails the test. */
const logLines: Array<{ level: number; msg: string; code?: string }> = [];
const logger = pino({ level: "info" }, { write: (line: string) => void logLines.push(JSON.parse(line) as { level: number; msg: string }) });

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

interface TestBlob {
  bytes: Buffer;
  digest: string;
  size: number;
  hashes: string[];
}

function makeBlob(pieces: number): TestBlob {
  const bytes = randomBytes(pieces * PIECE_SIZE + PIECE_SIZE / 3);
  const hashes: string[] = [];
  for (let at = 0; at < bytes.length; at += PIECE_SIZE) hashes.push(sha256(bytes.subarray(at, at + PIECE_SIZE)));
  return { bytes, digest: sha256(bytes), size: bytes.length, hashes };
}

type Node = PeerNode;

let root: RootCA;
const clusterId = newId();
let work: string;
let registry: LocalRegistry;
const nodes: Node[] = [];

async function startNode(name: string, extra: Partial<PeerServerOptions> = {}): Promise<Node> {
  const node = await startPeerNode({ root, clusterId, zone: ZONE, dir: join(work, name), logger, pieceSize: PIECE_SIZE, server: { chunkBytes: 16 * 1024, ...extra } });
  nodes.push(node);
  return node;
}

function grantFor(node: Node, blob: TestBlob): Buffer {
  return signGrant(root, { jobId: "job-1", clusterId, zone: ZONE, nodeId: node.nodeId, blobDigest: blob.digest, expiresAtMs: Date.now() + 5 * 60_000 });
}

function addressOf(...ns: Node[]): PeerAddress[] {
  return ns.map((n) => ({ nodeId: n.nodeId, addr: n.addr }));
}

/** The options every download in these tests shares; `seed` varies the tie-breaking. */
function fetchOptions(node: Node, blob: TestBlob, seed: number, over: Partial<BlobFetchOptions>): BlobFetchOptions {
  return {
    digest: blob.digest,
    size: blob.size,
    pieceSize: PIECE_SIZE,
    pieceHashes: blob.hashes,
    peers: [],
    grant: grantFor(node, blob),
    sink: node.pieces,
    peer: node.client,
    clock: systemClock,
    random: new SeededRandom(seed),
    pieceTimeoutMs: 5000,
    haveRefreshMs: 20,
    ...over,
  };
}

async function pushBlob(blob: TestBlob, repository: string): Promise<void> {
  const started = await fetch(`http://${registry.host}/v2/${repository}/blobs/uploads/`, { method: "POST" });
  assert.equal(started.status, 202);
  const location = new URL(started.headers.get("location")!, `http://${registry.host}`);
  location.searchParams.set("digest", blob.digest);
  const put = await fetch(location, { method: "PUT", body: new Uint8Array(blob.bytes) });
  assert.equal(put.status, 201);
}

/** The origin as the wiring makes it: resumable ranged pulls from the real registry. */
function registryOrigin(blob: TestBlob, repository: string, counter?: { calls: number }): OriginPull {
  const client = new RegistryClient({ idleTimeoutMs: 5000 });
  const ref = parseImageReference(`${registry.host}/${repository}:1`);
  const desc: Descriptor = { mediaType: "application/octet-stream", digest: blob.digest, size: blob.size };
  return (offset, length, signal) => {
    if (counter) counter.calls++;
    return pullRange(client, ref, desc, { offset, length }, { clock: systemClock, signal });
  };
}

async function assertHolds(node: Node, blob: TestBlob): Promise<void> {
  assert.ok(await node.store.has(blob.digest), `node ${node.nodeId} holds the blob`);
  const bytes = await readFile(node.store.pathOf(blob.digest));
  assert.equal(sha256(bytes), blob.digest, "with the right digest");
  assert.deepEqual(await node.store.ingesting(), [], "and no temp file left");
}

/** A sink that runs `after(n)` once the n-th piece is written (to act mid-fetch, deterministically). */
function observed(sink: PieceStore, afterPiece: (written: number) => void | Promise<void>): PieceSink {
  let written = 0;
  return {
    track: (...a) => sink.track(...a),
    writePiece: async (...a) => {
      await sink.writePiece(...a);
      await afterPiece(++written);
    },
    writeOriginPiece: (...a) => sink.writeOriginPiece(...a),
    complete: (...a) => sink.complete(...a),
    discard: (...a) => sink.discard(...a),
  };
}

before(async () => {
  await ensureContainerTools();
  work = await mkdtemp(join(tmpdir(), "shoal-p2p-fetch-"));
  root = await createRootCA({ clock: systemClock });
  registry = await startRegistry();
});

after(async () => {
  for (const n of nodes) {
    n.client.close();
    n.peer.close();
    await n.server.shutdown(200);
  }
  await registry?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("P2P blob fetch over mutual TLS", () => {
  test("a seed pulls from the registry while 3 peers fetch from it and each other; all end with the blob, hashes published as reported", async () => {
    const blob = makeBlob(24);
    await pushBlob(blob, "whole");
    const seed = await startNode("seed");
    const peers = await Promise.all(["p1", "p2", "p3"].map((n) => startNode(n)));
    // The plan's hashes start unknown and are filled in as the seed reports them (the manager's part).
    const published: Array<string | undefined> = new Array(blob.hashes.length).fill(undefined);
    const reported: number[] = [];
    const seeding = seedBlob({
      digest: blob.digest,
      size: blob.size,
      pieceSize: PIECE_SIZE,
      sink: seed.pieces,
      origin: registryOrigin(blob, "whole"),
      startPiece: 5,
      onPieceHash: (i, h) => {
        reported.push(i);
        published[i] = h;
      },
    });
    const results = await Promise.all(
      peers.map((p, k) => fetchBlob(fetchOptions(p, blob, k + 1, { pieceHashes: published, peers: addressOf(seed, ...peers.filter((q) => q !== p)), stallTimeoutMs: 60_000 }))),
    );
    const seeded = await seeding;
    assert.equal(seeded.fromOrigin, blob.size);
    assert.deepEqual(reported.slice(0, 3), [5, 6, 7], "the seed pulls in order from its start piece");
    assert.deepEqual([...reported].sort((a, b) => a - b), blob.hashes.map((_, i) => i), "and reports every piece once");
    assert.deepEqual(published, blob.hashes, "the reported hashes are the pieces' hashes");
    for (const r of results) {
      assert.equal(r.fromPeers, blob.size, "every byte of a peer came from peers");
      assert.equal(r.fromOrigin, 0);
    }
    for (const n of [seed, ...peers]) await assertHolds(n, blob);
    // The peers served each other too, not only the seed (loopback is fast, so this is loose).
    const servedByPeers = peers.reduce((sum, p) => sum + p.peer.stats().bytesSent, 0);
    assert.ok(seed.peer.stats().bytesSent >= blob.size, "the seed served at least one copy");
    assert.ok(seed.peer.stats().bytesSent + servedByPeers >= 3 * blob.size, "three copies went out in all");
    assert.deepEqual(logLines.filter((l) => l.level >= 50), [], "no peer failed to serve a piece it advertised");
  });

  test("a peer that serves corrupt bytes is reported once and excluded; the blob still completes correctly", async () => {
    const blob = makeBlob(12);
    let corrupted = 0;
    const seed = await startNode("c-seed");
    const bad = await startNode("c-bad", {
      corruptPiece: (_d, _i, bytes) => {
        corrupted++;
        const out = Buffer.from(bytes);
        out[0] = out[0]! ^ 0xff;
        return out;
      },
    });
    for (const holder of [seed, bad]) {
      await holder.pieces.track(blob.digest, blob.size, PIECE_SIZE, blob.hashes);
      for (let i = 0; i < blob.hashes.length; i++) await holder.pieces.writePiece(blob.digest, i, blob.bytes.subarray(i * PIECE_SIZE, (i + 1) * PIECE_SIZE));
      await holder.pieces.complete(blob.digest);
    }
    const x = await startNode("c-x");
    const reports: Array<{ nodeId: string; piece: number; reason: string }> = [];
    const r = await fetchBlob(fetchOptions(x, blob, 7, { peers: addressOf(bad, seed), onBadPeer: (nodeId, piece, reason) => reports.push({ nodeId, piece, reason }) }));
    assert.equal(reports.length, 1, `one report: ${JSON.stringify(reports)}`);
    assert.equal(reports[0]!.nodeId, bad.nodeId);
    assert.match(reports[0]!.reason, /hashes to sha256:[0-9a-f]{64}, the plan says/);
    assert.equal(corrupted, 1, "the bad peer was not asked again after its first piece");
    assert.equal(r.fromPeers, blob.size);
    await assertHolds(x, blob);
  });

  test("a peer revoked mid-fetch is dropped by the downloader, and the other peers refuse it", async () => {
    const blob = makeBlob(12);
    const other = makeBlob(2);
    const seed = await startNode("r-seed");
    const victim = await startNode("r-victim");
    for (const [holder, b] of [[seed, blob], [victim, blob], [seed, other]] as const) {
      await holder.pieces.track(b.digest, b.size, PIECE_SIZE, b.hashes);
      for (let i = 0; i < b.hashes.length; i++) await holder.pieces.writePiece(b.digest, i, b.bytes.subarray(i * PIECE_SIZE, (i + 1) * PIECE_SIZE));
      await holder.pieces.complete(b.digest);
    }
    const x = await startNode("r-x");
    let victimSentAtRevocation = -1;
    const revokeVictim = (): void => {
      victimSentAtRevocation = victim.peer.stats().bytesSent;
      for (const n of nodes) n.revocation.revoke({ nodeIds: [victim.nodeId], serials: [victim.serial] });
    };
    // The wiring's candidate list: the plan's peers, minus what this node's revocation list names.
    const candidates = (): PeerAddress[] => addressOf(...[victim, seed].filter((n) => !x.revocation.isRevoked(n.nodeId, n.serial)));
    let onlyVictim = true;
    const r = await fetchBlob(
      fetchOptions(x, blob, 3, {
        // Until the revocation only the victim is listed, so it certainly serves the first pieces.
        peers: () => (onlyVictim ? addressOf(victim) : candidates()),
        sink: observed(x.pieces, (written) => {
          if (written === 3) {
            revokeVictim();
            onlyVictim = false;
          }
        }),
      }),
    );
    assert.equal(r.fromPeers, blob.size);
    await assertHolds(x, blob);
    assert.ok(victimSentAtRevocation >= 3 * PIECE_SIZE, "the victim served the first pieces");
    assert.equal(victim.peer.stats().bytesSent, victimSentAtRevocation, "and nothing after its revocation");
    // The other side: the revoked node asks the seed for another blob and is refused.
    await assert.rejects(fetchBlob(fetchOptions(victim, other, 4, { peers: addressOf(seed), digest: other.digest })), (err: unknown) => {
      assert.ok(isShoalError(err, "PREFETCH_NO_SOURCE"), `expected PREFETCH_NO_SOURCE, got ${String(err)}`);
      assert.match((err as Error).message, /CERT_REVOKED/);
      return true;
    });
  });

  test("no peers but an origin: the registry serves every piece", async () => {
    const blob = makeBlob(6);
    await pushBlob(blob, "origin-only");
    const x = await startNode("o-x");
    const counter = { calls: 0 };
    const progress: number[] = [];
    const r = await fetchBlob(fetchOptions(x, blob, 5, { peers: [], origin: registryOrigin(blob, "origin-only", counter), onProgress: (p) => progress.push(p.piecesDone) }));
    assert.deepEqual(r, { fromPeers: 0, fromOrigin: blob.size, path: x.store.pathOf(blob.digest), alreadyHeld: false });
    assert.equal(counter.calls, blob.hashes.length, "one ranged pull per piece");
    assert.deepEqual(progress, blob.hashes.map((_, i) => i + 1));
    await assertHolds(x, blob);
    // A second fetch finds it held and fetches nothing.
    const again = await fetchBlob(fetchOptions(x, blob, 5, { peers: [] }));
    assert.equal(again.alreadyHeld, true);
  });

  test("no peers and no origin: PREFETCH_NO_SOURCE, saying so; nothing committed", async () => {
    const blob = makeBlob(3);
    const x = await startNode("n-x");
    await assert.rejects(fetchBlob(fetchOptions(x, blob, 6, { peers: [] })), (err: unknown) => {
      assert.ok(isShoalError(err, "PREFETCH_NO_SOURCE"), `got ${String(err)}`);
      assert.match((err as Error).message, /0 of 4 pieces held, the plan lists no peer for it, and this node has no origin/);
      return true;
    });
    assert.deepEqual(await x.store.list(), []);
  });

  test("a download cancelled by its signal leaves nothing in the content store or its ingest dir", async () => {
    const blob = makeBlob(12);
    const seed = await startNode("k-seed");
    await seed.pieces.track(blob.digest, blob.size, PIECE_SIZE, blob.hashes);
    for (let i = 0; i < blob.hashes.length; i++) await seed.pieces.writePiece(blob.digest, i, blob.bytes.subarray(i * PIECE_SIZE, (i + 1) * PIECE_SIZE));
    await seed.pieces.complete(blob.digest);
    const x = await startNode("k-x");
    const cancel = new AbortController();
    const reason = new ShoalError("UNAVAILABLE", "the job was cancelled by the manager");
    await assert.rejects(
      fetchBlob(fetchOptions(x, blob, 8, { peers: addressOf(seed), signal: cancel.signal, sink: observed(x.pieces, (n) => (n === 2 ? cancel.abort(reason) : undefined)) })),
      (err: unknown) => err === reason,
    );
    assert.deepEqual(await x.store.list(), [], "nothing committed");
    assert.deepEqual(await x.store.ingesting(), [], "no temp file left");
    assert.equal(x.pieces.held(blob.digest), undefined, "and nothing advertised");
  });
});

describe("piece store", () => {
  test("a piece that does not match its hash is PIECE_CORRUPT and not written; the ingest file is 0600 and sparse", async () => {
    const blob = makeBlob(3);
    const dir = join(work, "ps-1");
    const store = new ContentStore(join(dir, "content"));
    await store.open();
    const pieces = new PieceStore(store, { defaultPieceSize: PIECE_SIZE });
    await pieces.track(blob.digest, blob.size, PIECE_SIZE, blob.hashes);
    const [temp] = await store.ingesting();
    const st = await stat(join(dir, "content", "ingest", temp!));
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(st.size, blob.size, "the file has its final length at once");
    const bad = Buffer.from(blob.bytes.subarray(0, PIECE_SIZE));
    bad[10] = bad[10]! ^ 1;
    await assert.rejects(pieces.writePiece(blob.digest, 0, bad), (err: unknown) => isShoalError(err, "PIECE_CORRUPT"));
    assert.deepEqual(pieces.held(blob.digest)!.have, Uint8Array.of(0), "nothing advertised");
    const onDisk = await readFile(join(dir, "content", "ingest", temp!));
    assert.ok(onDisk.subarray(0, PIECE_SIZE).equals(Buffer.alloc(PIECE_SIZE)), "nothing written");
    await assert.rejects(pieces.readPiece(blob.digest, 0), (err: unknown) => isShoalError(err, "NOT_FOUND"));
    await pieces.writePiece(blob.digest, 1, blob.bytes.subarray(PIECE_SIZE, 2 * PIECE_SIZE));
    assert.deepEqual(pieces.held(blob.digest)!.have, Uint8Array.of(0b0100_0000));
    assert.ok((await pieces.readPiece(blob.digest, 1)).equals(blob.bytes.subarray(PIECE_SIZE, 2 * PIECE_SIZE)));
    await assert.rejects(pieces.complete(blob.digest), (err: unknown) => isShoalError(err, "FAILED_PRECONDITION"));
  });

  test("origin pieces that do not make up the digest: DIGEST_MISMATCH at complete, and all of it is dropped", async () => {
    const blob = makeBlob(2);
    const store = new ContentStore(join(work, "ps-2", "content"));
    await store.open();
    const pieces = new PieceStore(store, { defaultPieceSize: PIECE_SIZE });
    await pieces.track(blob.digest, blob.size, PIECE_SIZE);
    const hashes: string[] = [];
    for (let i = 0; i < blob.hashes.length; i++) {
      const bytes = Buffer.from(blob.bytes.subarray(i * PIECE_SIZE, (i + 1) * PIECE_SIZE));
      if (i === 1) bytes[0] = bytes[0]! ^ 1; // the origin lied about one piece
      hashes.push(await pieces.writeOriginPiece(blob.digest, i, bytes));
    }
    assert.equal(hashes[0], blob.hashes[0], "an origin piece's hash is returned");
    assert.notEqual(hashes[1], blob.hashes[1]);
    await assert.rejects(pieces.complete(blob.digest), (err: unknown) => isShoalError(err, "DIGEST_MISMATCH"));
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await store.ingesting(), []);
    assert.equal(pieces.held(blob.digest), undefined);
  });

  test("a complete blob is served in slices, each re-checked against its recorded hash; a changed byte on disk is refused", async () => {
    const blob = makeBlob(3);
    const store = new ContentStore(join(work, "ps-3", "content"));
    await store.open();
    const pieces = new PieceStore(store, { defaultPieceSize: PIECE_SIZE });
    await pieces.track(blob.digest, blob.size, PIECE_SIZE, blob.hashes);
    for (let i = 0; i < blob.hashes.length; i++) await pieces.writePiece(blob.digest, i, blob.bytes.subarray(i * PIECE_SIZE, (i + 1) * PIECE_SIZE));
    await pieces.complete(blob.digest);
    assert.deepEqual(pieces.held(blob.digest), { pieceSize: PIECE_SIZE, pieceCount: 4, have: Uint8Array.of(0b1111_0000) });
    assert.ok((await pieces.readPiece(blob.digest, 3)).equals(blob.bytes.subarray(3 * PIECE_SIZE)));
    const { open } = await import("node:fs/promises");
    const h = await open(store.pathOf(blob.digest), "r+");
    await h.write(Buffer.from([blob.bytes[PIECE_SIZE]! ^ 0xff]), 0, 1, PIECE_SIZE);
    await h.close();
    await assert.rejects(pieces.readPiece(blob.digest, 1), (err: unknown) => isShoalError(err, "STORE_CORRUPT"));
    // A blob the store holds from a direct pull (no recorded hashes) is served in default-size pieces.
    const fresh = new PieceStore(store, { defaultPieceSize: PIECE_SIZE });
    assert.equal(fresh.held(blob.digest)!.pieceCount, 4);
  });
});
