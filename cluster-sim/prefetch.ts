// The P2P prefetch under a bandwidth model: the real planner (src/manager/prefetch/plan.ts) and the
// real piece choice (src/agent/p2p/piece-choice.ts) driven the way the manager and the agents drive
// them, on a deterministic discrete-event model of the network, so that a seed replays exactly and
// the protocol's knobs can be tuned at a thousand nodes in one process.
//
// The model: every node has an upload and a download rate; a transfer's rate is the smaller of its
// sender's upload and its receiver's download, each shared equally among that node's concurrent
// transfers (recomputed whenever a transfer at either end starts or ends). A link costs RTT/2 one
// way: a request reaches the sender RTT/2 after it is sent, a piece is usable RTT/2 after its last
// byte left. The origin (the registry) has its own upload rate, shared among the seeds pulling from
// it; each seed pulls the pieces it lacks in order, one Range request after the other (the next one
// is sent while the current streams, so the stream has no gaps). The first seed to hold a piece
// reports its hash; the manager publishes it one RTT later, and no peer commits (or serves) a piece
// before its hash is known. Bitfields are pushed: a node that commits a piece sends Have to the
// nodes that list it as a candidate, which see it RTT/2 later (BitTorrent's HAVE, rather than
// polling every RTT, which would cost N events per RTT whether anything changed or not).
// Protocol knobs, with the defaults the bench was tuned to (scripts/bench/prefetch-sim.ts): K
// candidates per node (the planner's 8), one request in flight per peer, endgame "auto", seeds'
// origin pulls staggered (originStartPiece), a seed hiding a piece it has started sending for a
// while and answering "busy" to a request for it meanwhile (so its upload brings each piece into
// the zone once), no bound on concurrent uploads.
//
// Faults: a node revoked at a time (every peer refuses it from then on, its transfers are cut, the
// manager replans without it and the new plan reaches the nodes RTT/2 later); a bad peer that serves
// corrupt bytes (each receiver detects it on arrival, drops the piece, stops asking that peer and
// reports it; the manager excludes it and replans). Checked: no byte crosses a zone; every eligible
// node completes; origin egress per zone is at most (seeds ever) × S; a revoked node receives
// nothing after its revocation; a corrupt piece is never committed.
import { clearBit, countBits, hasBit, newBitfield, setBit } from "../src/base/bitfield.js";
import { SeededRandom } from "../src/base/random.js";
import { choosePieces, type PieceChoicePeer } from "../src/agent/p2p/piece-choice.js";
import { originStartPiece, planPrefetch, type PlanNode, type PrefetchPlan } from "../src/manager/prefetch/plan.js";
import { EventQueue } from "./events.js";

export interface PrefetchSimOptions {
  seed: number;
  /** Targets per zone, e.g. { a: 100 } or { a: 6, b: 3 }. */
  zones: Record<string, number>;
  blobBytes: number;
  pieceBytes?: number;
  /** Per-node upload and download rate. */
  nodeBytesPerMs: number;
  originBytesPerMs: number;
  rttMs: number;
  candidatesPerNode?: number;
  maxInFlightPerPeer?: number;
  endgame?: boolean | "auto";
  /** Requests a node has outstanding in all (the rarest are sent first); unbounded by default. */
  maxInFlightPerNode?: number;
  /** Seeds of a zone start their origin pulls at evenly spaced pieces (true, the default: originStartPiece) or all at piece 0. */
  staggerSeeds?: boolean;
  /**
   * A seed stops advertising a piece once it starts sending it to one peer, for this long (then
   * advertises it again), so that its upload carries each piece once into the zone instead of the
   * same newest piece to all who ask (BitTorrent's super-seeding, simplified). 0 turns it off.
   */
  seedHideServedMs?: number;
  /** Transfers a node serves at once; further requests wait their turn (FIFO). */
  uploadSlots?: number;
  seedsFor?: (zoneTargets: number) => number;
  /** Nodes (by index in the target list, zones in key order) revoked at a virtual time. */
  revoke?: Array<{ node: number; atMs: number }>;
  /** Nodes that serve corrupt pieces. */
  corrupt?: number[];
  /** A guard against a model that never finishes; a run past it fails its liveness check. */
  maxVirtualMs?: number;
  /** Deliberate bugs, to show that the checks can fail. */
  planted?: { skipPieceVerification?: boolean; serveRevoked?: boolean; crossZoneCandidate?: boolean };
}

export interface PrefetchSimStats {
  nodes: number;
  pieces: number;
  /** Completion times of the nodes that completed (ms from the plan). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** S/B + ceil(log2(N+1))·(c/B + RTT) for the largest zone. */
  tPipeMs: number;
  originBytes: number;
  originBytesByZone: Record<string, number>;
  peerBytes: number;
  /** Bytes delivered that the receiver already had (endgame duplicates) or threw away (corrupt). */
  wastedBytes: number;
  replans: number;
  /** Requests a peer refused (to or from a revoked or excluded node). */
  refusedRequests: number;
  /** Requests a seed answered busy (the piece was already on its way to another peer). */
  busyRequests: number;
  events: number;
  virtualMs: number;
}

export interface PrefetchSimResult {
  seed: number;
  ok: boolean;
  violation?: string;
  stats: PrefetchSimStats;
}

export const DEFAULT_MAX_IN_FLIGHT_PER_PEER = 1;
export const DEFAULT_UPLOAD_SLOTS = Infinity;
/** A seed hides a piece it started sending for this many piece times (c/B): about 3 s at 1 Gbit/s and 4 MiB, long enough for the piece to spread from its first receiver. */
export const DEFAULT_SEED_HIDE_SERVED_PIECES = 90;

const ORIGIN = -1;

interface Flow {
  src: number; // node index, or ORIGIN
  dst: number;
  piece: number;
  remainingBytes: number;
  bytesPerMs: number;
  lastMs: number;
  /** Bumped on each rate change: a completion event of an older version is stale. */
  version: number;
  corrupt: boolean;
  live: boolean;
  /** When its last byte left the sender. */
  endMs?: number;
}

interface SimNode {
  id: string;
  zone: string;
  role: "seed" | "peer";
  candidates: number[];
  have: Uint8Array;
  /** What the nodes that list this one see (its Have messages, RTT/2 late). */
  advertised: Uint8Array;
  /** Pieces received before their hash was published, verified when it is: piece -> the sender, and whether it sent bad bytes. */
  awaitingHash: Map<number, { src: number; corrupt: boolean }>;
  inFlight: Map<number, Set<string>>;
  requestsTo: Map<number, number>;
  failed: Set<number>;
  ups: Set<Flow>;
  downs: Set<Flow>;
  /** A seed's pieces hidden from its Have -> the peer it first sent them to. */
  hidden: Map<number, number>;
  /** Requests waiting for an upload slot. */
  queued: Array<{ dst: number; piece: number }>;
  revokedAtMs?: number;
  excluded: boolean;
  corrupt: boolean;
  originPulling: boolean;
  originStarted: boolean;
  /** The piece a seed's origin pull starts at (then in order, wrapping round). */
  originFirstPiece: number;
  doneAtMs?: number;
}

export function tPipeMs(blobBytes: number, pieceBytes: number, nodeBytesPerMs: number, rttMs: number, nodes: number): number {
  return blobBytes / nodeBytesPerMs + Math.ceil(Math.log2(nodes + 1)) * (pieceBytes / nodeBytesPerMs + rttMs);
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

class Violation extends Error {}

export function runPrefetchSim(opts: PrefetchSimOptions): PrefetchSimResult {
  const sim = new PrefetchSim(opts);
  try {
    sim.run();
    sim.checkAfter();
    return { seed: opts.seed, ok: true, stats: sim.stats() };
  } catch (err) {
    if (!(err instanceof Violation)) throw err;
    return { seed: opts.seed, ok: false, violation: err.message, stats: sim.stats() };
  }
}

class PrefetchSim {
  private readonly queue = new EventQueue();
  private readonly random: SeededRandom;
  private readonly pieceBytes: number;
  private readonly pieceCount: number;
  private readonly maxInFlight: number;
  private readonly nodes: SimNode[] = [];
  private readonly byId = new Map<string, number>();
  /** Node -> the nodes that list it as a candidate (they get its Have messages). */
  private subscribers: number[][] = [];
  private plan: PrefetchPlan | undefined;
  private readonly hashKnownAtMs: number[];
  private readonly origin = { ups: new Set<Flow>() };
  private readonly originBytesByZone: Record<string, number> = {};
  private readonly seedsEver = new Map<string, Set<number>>();
  private peerBytes = 0;
  private wastedBytes = 0;
  private refused = 0;
  private busy = 0;
  private replans = 0;
  private events = 0;

  constructor(private readonly opts: PrefetchSimOptions) {
    this.random = new SeededRandom(opts.seed);
    this.pieceBytes = opts.pieceBytes ?? 4 * 1024 * 1024;
    this.pieceCount = Math.ceil(opts.blobBytes / this.pieceBytes);
    this.maxInFlight = opts.maxInFlightPerPeer ?? DEFAULT_MAX_IN_FLIGHT_PER_PEER;
    this.hashKnownAtMs = new Array<number>(this.pieceCount).fill(Infinity);
    const corrupt = new Set(opts.corrupt ?? []);
    for (const zone of Object.keys(opts.zones).sort()) {
      this.originBytesByZone[zone] = 0;
      for (let i = 0; i < opts.zones[zone]!; i++) {
        const id = `${zone}${i}`;
        this.byId.set(id, this.nodes.length);
        this.nodes.push({
          id,
          zone,
          role: "peer",
          candidates: [],
          have: newBitfield(this.pieceCount),
          advertised: newBitfield(this.pieceCount),
          awaitingHash: new Map(),
          inFlight: new Map(),
          requestsTo: new Map(),
          failed: new Set(),
          ups: new Set(),
          downs: new Set(),
          queued: [],
          hidden: new Map(),
          excluded: false,
          corrupt: corrupt.has(this.nodes.length),
          originPulling: false,
          originStarted: false,
          originFirstPiece: 0,
        });
      }
    }
  }

  private pieceSize(piece: number): number {
    return piece === this.pieceCount - 1 ? this.opts.blobBytes - piece * this.pieceBytes : this.pieceBytes;
  }

  private at(delayMs: number, run: () => void): void {
    this.queue.schedule(delayMs, "prefetch", run);
  }

  run(): void {
    this.replan();

    for (const r of this.opts.revoke ?? []) this.at(r.atMs, () => this.revoke(r.node));
    const limit = this.opts.maxVirtualMs ?? 100 * tPipeMs(this.opts.blobBytes, this.pieceBytes, this.opts.nodeBytesPerMs, this.opts.rttMs, this.nodes.length);
    for (;;) {
      const next = this.queue.peekTimeMs();
      if (next === undefined || next > limit) break;
      this.queue.pop()!.run();
      this.events++;
    }
  }

  // --- the manager --------------------------------------------------------------------------

  private planNodes(): PlanNode[] {
    return this.nodes.map((n) => ({ nodeId: n.id, zone: n.zone, addr: n.id, revoked: n.revokedAtMs !== undefined, down: false, excluded: n.excluded, load: 0 }));
  }

  /** Plans (again) and hands every node its part; a replan reaches the nodes RTT/2 after its cause. */
  private replan(): void {
    this.plan = planPrefetch({
      jobId: "job",
      targets: this.planNodes(),
      ...(this.plan ? { previous: this.plan } : {}),
      ...(this.opts.candidatesPerNode !== undefined ? { candidatesPerNode: this.opts.candidatesPerNode } : {}),
      ...(this.opts.seedsFor ? { seedsFor: this.opts.seedsFor } : {}),
      random: this.random,
    });
    this.replans++;
    this.checkPlanZones(this.plan);
    this.subscribers = this.nodes.map(() => []);
    // A revoked node gets no plan but keeps asking the peers it knew: they must refuse it.
    for (const n of this.nodes) if (n.revokedAtMs === undefined) n.candidates = [];
    for (const p of this.plan.nodes) {
      const i = this.byId.get(p.nodeId)!;
      const node = this.nodes[i]!;
      node.role = p.role;
      node.candidates = p.candidates.map((c) => this.byId.get(c)!);
      if (this.opts.planted?.crossZoneCandidate === true) {
        const stranger = this.nodes.findIndex((n) => n.zone !== node.zone);
        if (stranger >= 0) node.candidates.push(stranger);
      }
      if (p.role === "seed") (this.seedsEver.get(node.zone) ?? this.seedsEver.set(node.zone, new Set()).get(node.zone)!).add(i);
    }
    // A revoked node still learns what its old peers hold (it may keep polling them) and keeps asking.
    this.nodes.forEach((n, i) => {
      for (const c of n.candidates) this.subscribers[c]!.push(i);
    });
    if (this.opts.staggerSeeds !== false) {
      for (const p of this.plan.nodes) {
        const node = this.nodes[this.byId.get(p.nodeId)!]!;
        if (p.role === "seed" && !node.originStarted) node.originFirstPiece = originStartPiece(this.plan, p.nodeId, this.pieceCount);
      }
    }
    this.nodes.forEach((n, i) => {
      for (const [piece, dst] of [...n.hidden]) if (!this.usable(dst)) this.unhide(i, piece);
    });
    for (const p of this.plan.nodes) {
      const i = this.byId.get(p.nodeId)!;
      const node = this.nodes[i]!;
      // Requests to peers that left the node's list are cancelled (the peer was revoked or excluded).
      for (const f of [...node.downs]) if (f.src !== ORIGIN && !node.candidates.includes(f.src)) this.cancel(f, true);
      if (node.role === "seed") this.pullFromOrigin(i);
      else this.pump(i);
    }
  }

  private checkPlanZones(plan: PrefetchPlan): void {
    for (const p of plan.nodes) {
      for (const c of p.candidates) {
        const other = this.nodes[this.byId.get(c)!]!;
        if (other.zone !== p.zone) throw new Violation(`plan lists ${c} (zone ${other.zone}) for ${p.nodeId} (zone ${p.zone})`);
        if (other.revokedAtMs !== undefined || other.excluded) throw new Violation(`plan lists ineligible ${c} for ${p.nodeId}`);
      }
    }
  }

  private revoke(i: number): void {
    const node = this.nodes[i]!;
    if (node.revokedAtMs !== undefined) return;
    node.revokedAtMs = this.queue.nowMs;
    // Every peer refuses it from now on (mutual TLS both ways): its transfers are cut at once.
    for (const f of [...node.downs, ...node.ups]) this.cancel(f, true);
    this.at(this.opts.rttMs / 2, () => this.replan());
  }

  /** The receiver's report reaches the manager RTT/2 later; the bad peer is excluded from the job. */
  private reportCorrupt(bad: number): void {
    this.at(this.opts.rttMs / 2, () => {
      const node = this.nodes[bad]!;
      if (node.excluded) return;
      node.excluded = true;
      for (const f of [...node.ups]) this.cancel(f, true);
      this.at(this.opts.rttMs / 2, () => this.replan());
    });
  }

  private publishHash(piece: number): void {
    if (this.hashKnownAtMs[piece] !== Infinity) return;
    const at = this.queue.nowMs + this.opts.rttMs;
    this.hashKnownAtMs[piece] = at;
    this.at(this.opts.rttMs, () => {
      for (let i = 0; i < this.nodes.length; i++) {
        const waiting = this.nodes[i]!.awaitingHash.get(piece);
        if (waiting === undefined) continue;
        this.nodes[i]!.awaitingHash.delete(piece);
        this.verifyAndCommit(i, piece, waiting.src, waiting.corrupt);
      }
    });
  }

  // --- the agents ---------------------------------------------------------------------------

  private usable(i: number): boolean {
    const n = this.nodes[i]!;
    return n.revokedAtMs === undefined && !n.excluded;
  }

  /** A seed pulls the pieces it lacks from the origin, in order, one stream at a time. */
  private pullFromOrigin(i: number): void {
    const node = this.nodes[i]!;
    if (node.originPulling || !this.usable(i) || node.doneAtMs !== undefined) return;
    let piece = -1;
    for (let k = 0; k < this.pieceCount; k++) {
      const p = (node.originFirstPiece + k) % this.pieceCount;
      if (!hasBit(node.have, p) && !node.inFlight.has(p)) {
        piece = p;
        break;
      }
    }
    if (piece < 0) return;
    node.originPulling = true;
    node.inFlight.set(piece, new Set(["origin"]));
    // The first request pays its RTT/2 to reach the origin; each later one was sent while the
    // previous piece streamed, so the origin starts it as soon as the previous one's bytes are out.
    const delayMs = node.originStarted ? 0 : this.opts.rttMs / 2;
    node.originStarted = true;
    this.at(delayMs, () => {
      if (this.usable(i)) this.startFlow(ORIGIN, i, piece, false);
    });
  }

  /** Asks the node's candidates for what piece choice picks now. */
  private pump(i: number): void {
    const node = this.nodes[i]!;
    if (node.role === "seed" || node.doneAtMs !== undefined || node.excluded) return;
    const peers: PieceChoicePeer[] = [];
    for (const c of node.candidates) {
      peers.push({ id: this.nodes[c]!.id, have: this.nodes[c]!.advertised, inFlight: node.requestsTo.get(c) ?? 0, ...(node.failed.has(c) ? { failed: true } : {}) });
    }
    if (peers.length === 0) return;
    // Pieces waiting for their hash count as held: asking for them again would only waste a peer.
    let have = node.have;
    if (node.awaitingHash.size > 0) {
      have = new Uint8Array(node.have);
      for (const p of node.awaitingHash.keys()) setBit(have, p);
    }
    const requests = choosePieces({ pieceCount: this.pieceCount, have, inFlight: node.inFlight, peers, maxInFlightPerPeer: this.maxInFlight, endgame: this.opts.endgame ?? "auto", random: this.random });
    let budget = (this.opts.maxInFlightPerNode ?? Infinity) - node.downs.size - this.pendingRequests(node);
    for (const { peer, piece } of requests) {
      if (budget-- <= 0) break;
      const src = this.byId.get(peer)!;
      (node.inFlight.get(piece) ?? node.inFlight.set(piece, new Set()).get(piece)!).add(peer);
      node.requestsTo.set(src, (node.requestsTo.get(src) ?? 0) + 1);
      this.at(this.opts.rttMs / 2, () => this.serve(src, i, piece));
    }
  }

  /** Requests sent and not yet being transferred. */
  private pendingRequests(node: SimNode): number {
    let n = 0;
    for (const v of node.requestsTo.values()) n += v;
    return n - node.downs.size;
  }

  /** A request arrives at the sender: served unless either end is revoked or excluded. */
  private serve(src: number, dst: number, piece: number): void {
    const asked = this.nodes[dst]!.inFlight.get(piece);
    if (asked === undefined || !asked.has(this.nodes[src]!.id)) return; // cancelled on the way
    const refuse = this.opts.planted?.serveRevoked === true ? this.nodes[src]!.excluded || this.nodes[dst]!.excluded : !this.usable(src) || !this.usable(dst);
    if (refuse || !hasBit(this.nodes[src]!.have, piece)) {
      this.refused++;
      this.at(this.opts.rttMs / 2, () => this.forget(dst, src, piece, true));
      return;
    }
    if (this.nodes[src]!.zone !== this.nodes[dst]!.zone) throw new Violation(`${this.nodes[src]!.id} serves ${this.nodes[dst]!.id} across zones`);
    const sender = this.nodes[src]!;
    if (sender.role === "seed" && this.hideMs() > 0 && !hasBit(sender.advertised, piece)) {
      // Super-seeding: the piece is on its way to another peer; the asker picks another one.
      this.busy++;
      this.at(this.opts.rttMs / 2, () => this.forget(dst, src, piece, false));
      return;
    }
    if (sender.ups.size >= this.slots()) sender.queued.push({ dst, piece });
    else this.startFlow(src, dst, piece, sender.corrupt);
  }

  private slots(): number {
    return this.opts.uploadSlots ?? DEFAULT_UPLOAD_SLOTS;
  }

  private hideMs(): number {
    return this.opts.seedHideServedMs ?? DEFAULT_SEED_HIDE_SERVED_PIECES * (this.pieceBytes / this.opts.nodeBytesPerMs);
  }

  /** An upload slot came free: the next queued request that is still wanted. */
  private serveQueued(src: number): void {
    const sender = this.nodes[src]!;
    while (sender.queued.length > 0 && sender.ups.size < this.slots() && this.usable(src)) {
      const { dst, piece } = sender.queued.shift()!;
      if (this.nodes[dst]!.inFlight.get(piece)?.has(sender.id) === true) this.serve(src, dst, piece);
    }
  }

  /** Drops a request from the receiver's books; `failed` marks the peer as not to be asked again. */
  private forget(dst: number, src: number, piece: number, failed: boolean): void {
    const node = this.nodes[dst]!;
    const id = src === ORIGIN ? "origin" : this.nodes[src]!.id;
    const asked = node.inFlight.get(piece);
    if (asked?.delete(id) === true) {
      if (asked.size === 0) node.inFlight.delete(piece);
      if (src !== ORIGIN) node.requestsTo.set(src, (node.requestsTo.get(src) ?? 1) - 1);
    }
    if (failed && src !== ORIGIN) node.failed.add(src);
    if (src === ORIGIN) {
      node.originPulling = false;
      this.pullFromOrigin(dst);
    } else this.pump(dst);
  }

  private arrive(f: Flow): void {
    const node = this.nodes[f.dst]!;
    if (node.revokedAtMs !== undefined) {
      // Checked, not assumed: a transfer to a revoked node must have been cut at its revocation.
      if (f.endMs! > node.revokedAtMs) throw new Violation(`revoked ${node.id} received piece ${f.piece} from ${f.src === ORIGIN ? "the origin" : this.nodes[f.src]!.id} ${f.endMs! - node.revokedAtMs} ms after its revocation`);
      if (this.opts.planted?.serveRevoked !== true) return; // the connection is closed
    }
    const bytes = this.pieceSize(f.piece);
    if (f.src === ORIGIN) this.originBytesByZone[node.zone]! += bytes;
    else this.peerBytes += bytes;
    if (hasBit(node.have, f.piece) || node.awaitingHash.has(f.piece)) {
      this.wastedBytes += bytes;
      this.forget(f.dst, f.src, f.piece, false);
      return;
    }
    // Other outstanding requests of this piece are cancelled (endgame duplicates).
    for (const other of [...node.downs]) if (other.piece === f.piece) this.cancel(other, false);
    const asked = node.inFlight.get(f.piece);
    if (asked) {
      for (const id of asked) {
        const s = this.byId.get(id);
        if (s !== undefined) node.requestsTo.set(s, (node.requestsTo.get(s) ?? 1) - 1);
      }
      node.inFlight.delete(f.piece);
    }
    if (f.src === ORIGIN) {
      // A seed hashes what it pulls and reports it; the manager publishes the hash. (Origin bytes
      // are checked against the blob digest once complete; the model's origin is honest.)
      this.publishHash(f.piece);
      this.commit(f.dst, f.piece, false);
    } else {
      if (this.hashKnownAtMs[f.piece]! <= this.queue.nowMs) this.verifyAndCommit(f.dst, f.piece, f.src, f.corrupt);
      else node.awaitingHash.set(f.piece, { src: f.src, corrupt: f.corrupt });
      this.pump(f.dst);
    }
  }

  /** A peer's piece against its published hash: a mismatch is dropped, its sender reported and no longer asked. */
  private verifyAndCommit(i: number, piece: number, src: number, corrupt: boolean): void {
    if (corrupt && this.opts.planted?.skipPieceVerification !== true) {
      this.wastedBytes += this.pieceSize(piece);
      this.nodes[i]!.failed.add(src);
      this.reportCorrupt(src);
      this.pump(i);
      return;
    }
    this.commit(i, piece, corrupt);
  }

  private commit(i: number, piece: number, corrupt: boolean): void {
    const node = this.nodes[i]!;
    if (corrupt) throw new Violation(`${node.id} committed a corrupt copy of piece ${piece}`);
    if (!this.usable(i) || hasBit(node.have, piece)) return;
    setBit(node.have, piece);
    if (countBits(node.have) === this.pieceCount) node.doneAtMs = this.queue.nowMs;
    this.at(this.opts.rttMs / 2, () => {
      setBit(node.advertised, piece);
      for (const s of this.subscribers[i]!) if (!hasBit(this.nodes[s]!.have, piece)) this.pump(s);
    });
  }

  /**
   * A seed hides a piece from its Have once it starts sending it to one peer, until that peer has
   * had time to pass it on (hideMs), or at once when the transfer is cut or that peer leaves the
   * plan (revoked, excluded): a piece must never stay hidden with no one else to get it from.
   */
  private hideServed(src: number, dst: number, piece: number): void {
    const holdMs = this.hideMs();
    const seed = this.nodes[src]!;
    if (holdMs <= 0 || !hasBit(seed.advertised, piece)) return;
    clearBit(seed.advertised, piece);
    seed.hidden.set(piece, dst);
    this.at(holdMs, () => this.unhide(src, piece));
  }

  private unhide(src: number, piece: number): void {
    const seed = this.nodes[src]!;
    if (!seed.hidden.delete(piece)) return;
    setBit(seed.advertised, piece);
    for (const s of this.subscribers[src]!) if (!hasBit(this.nodes[s]!.have, piece)) this.pump(s);
  }

  // --- the network --------------------------------------------------------------------------

  private startFlow(src: number, dst: number, piece: number, corrupt: boolean): void {
    if (src !== ORIGIN && this.nodes[src]!.role === "seed") this.hideServed(src, dst, piece);
    const f: Flow = { src, dst, piece, remainingBytes: this.pieceSize(piece), bytesPerMs: 0, lastMs: this.queue.nowMs, version: 0, corrupt, live: true };
    (src === ORIGIN ? this.origin.ups : this.nodes[src]!.ups).add(f);
    this.nodes[dst]!.downs.add(f);
    this.reshare(src, dst);
  }

  /** Stops a transfer; `refused` tells the receiver (after RTT/2) so it asks elsewhere. */
  private cancel(f: Flow, refused: boolean): void {
    if (!f.live) return;
    this.settle(f);
    this.removeFlow(f);
    if (f.src !== ORIGIN && this.nodes[f.src]!.hidden.get(f.piece) === f.dst) this.unhide(f.src, f.piece);
    if (refused) this.at(this.opts.rttMs / 2, () => this.forget(f.dst, f.src, f.piece, f.src !== ORIGIN && !this.usable(f.src)));
  }

  private removeFlow(f: Flow): void {
    f.live = false;
    (f.src === ORIGIN ? this.origin.ups : this.nodes[f.src]!.ups).delete(f);
    this.nodes[f.dst]!.downs.delete(f);
    this.reshare(f.src, f.dst);
    if (f.src !== ORIGIN) this.serveQueued(f.src);
  }

  private settle(f: Flow): void {
    const now = this.queue.nowMs;
    f.remainingBytes = Math.max(0, f.remainingBytes - f.bytesPerMs * (now - f.lastMs));
    f.lastMs = now;
  }

  /**
   * New rates after a transfer between src and dst started or ended. Each sender splits its upload
   * max-min fairly (water-filling) among its transfers, each capped at the receiver's equal share
   * of its download: so a sender whose receiver is busy elsewhere gives the spare upload to its
   * other transfers, and no receiver gets more than its download rate in total. A sender's split
   * depends on its receivers' counts, so every sender of dst is recomputed as well as src.
   */
  private reshare(src: number, dst: number): void {
    this.waterfill(src);
    for (const f of this.nodes[dst]!.downs) if (f.src !== src) this.waterfill(f.src);
  }

  private readonly fillScratch: Flow[] = [];

  private waterfill(src: number): void {
    const ups = src === ORIGIN ? this.origin.ups : this.nodes[src]!.ups;
    if (ups.size === 0) return;
    const cap = (f: Flow): number => this.opts.nodeBytesPerMs / this.nodes[f.dst]!.downs.size;
    const flows = this.fillScratch;
    flows.length = 0;
    for (const f of ups) flows.push(f);
    if (flows.length > 1) flows.sort((a, b) => cap(a) - cap(b));
    let left = src === ORIGIN ? this.opts.originBytesPerMs : this.opts.nodeBytesPerMs;
    for (let k = 0; k < flows.length; k++) {
      const f = flows[k]!;
      const rate = Math.min(cap(f), left / (flows.length - k));
      left -= rate;
      this.setRate(f, rate);
    }
  }

  private setRate(f: Flow, rate: number): void {
    if (rate === f.bytesPerMs) return;
    this.settle(f);
    f.bytesPerMs = rate;
    const version = ++f.version;
    this.at(f.remainingBytes / rate, () => {
      if (!f.live || f.version !== version) return;
      f.endMs = this.queue.nowMs;
      this.removeFlow(f);
      if (f.src === ORIGIN) {
        // The next Range request is already at the origin.
        this.nodes[f.dst]!.originPulling = false;
        this.pullFromOrigin(f.dst);
      }
      // The last byte still has to cross the link.
      this.at(this.opts.rttMs / 2, () => this.arrive(f));
    });
  }

  // --- checks and figures -------------------------------------------------------------------

  checkAfter(): void {
    for (const n of this.nodes) {
      const eligible = n.revokedAtMs === undefined && !n.excluded;
      if (eligible && n.doneAtMs === undefined) throw new Violation(`${n.id} did not complete (${countBits(n.have)}/${this.pieceCount} pieces)`);
      if (n.revokedAtMs !== undefined && n.doneAtMs !== undefined && n.doneAtMs > n.revokedAtMs) throw new Violation(`revoked ${n.id} completed after its revocation`);
    }
    for (const [zone, seeds] of this.seedsEver) {
      const allowed = seeds.size * this.opts.blobBytes;
      if (this.originBytesByZone[zone]! > allowed) throw new Violation(`zone ${zone}: ${this.originBytesByZone[zone]} origin bytes for ${seeds.size} seeds of ${this.opts.blobBytes}`);
    }
  }

  stats(): PrefetchSimStats {
    const done = this.nodes.filter((n) => n.doneAtMs !== undefined).map((n) => n.doneAtMs!);
    done.sort((a, b) => a - b);
    const largest = Math.max(...Object.values(this.opts.zones));
    const originBytes = Object.values(this.originBytesByZone).reduce((a, b) => a + b, 0);
    return {
      nodes: this.nodes.length,
      pieces: this.pieceCount,
      p50Ms: percentile(done, 50),
      p99Ms: percentile(done, 99),
      maxMs: done.at(-1) ?? 0,
      tPipeMs: tPipeMs(this.opts.blobBytes, this.pieceBytes, this.opts.nodeBytesPerMs, this.opts.rttMs, largest),
      originBytes,
      originBytesByZone: { ...this.originBytesByZone },
      peerBytes: this.peerBytes,
      wastedBytes: this.wastedBytes,
      replans: this.replans,
      refusedRequests: this.refused,
      busyRequests: this.busy,
      events: this.events,
      virtualMs: this.queue.nowMs,
    };
  }
}
