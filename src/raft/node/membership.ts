// Membership bookkeeping for the Raft driver: who the members are and where they listen, which
// raft IDs were removed (never reused), and the quorum-safety rule for removals.
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { ShoalError } from "../../base/errors.js";
import type { Random } from "../../base/random.js";
import { RaftMember } from "../../proto/shoal/v1/raft.js";
import { NO_NODE, type ConfState, type RaftId } from "../core/types.js";

/** What the cluster knows about one raft member besides its ID: carried in ConfChange contexts. */
export interface RaftMemberInfo {
  raftId: RaftId;
  /** The manager's node ID (25 characters, DESIGN.md §2). */
  nodeId: string;
  /** host:port where its Raft gRPC service listens. */
  addr: string;
}

export interface RaftMemberStatus extends RaftMemberInfo {
  voter: boolean;
}

const MAX_U64 = (1n << 64n) - 1n;
/** Bounds what a ConfChange context may hold, so a corrupt or hostile entry cannot bloat memory. */
const MAX_MEMBER_CONTEXT_BYTES = 4096;

/**
 * A fresh raft member ID: random, non-zero, 64-bit, and never one that was removed before
 * (DESIGN.md §2). `taken` covers the current members so an ID is never handed out twice.
 */
export function allocateRaftId(removedIds: Iterable<RaftId>, random: Random, taken: Iterable<RaftId> = []): RaftId {
  const forbidden = new Set<RaftId>([...removedIds, ...taken, NO_NODE]);
  for (let attempt = 0; attempt < 64; attempt++) {
    let id = 0n;
    // Four 16-bit draws keep every draw well inside the float's 53-bit precision.
    for (let part = 0; part < 4; part++) id = (id << 16n) | BigInt(random.int(0, 0x10000));
    if (!forbidden.has(id)) return id;
  }
  throw new ShoalError("INTERNAL", "could not draw an unused raft ID in 64 attempts; the random source looks broken");
}

export function assertValidRaftId(id: RaftId, what: string): void {
  if (typeof id !== "bigint" || id <= 0n || id > MAX_U64) {
    throw new ShoalError("INVALID_ARGUMENT", `${what} must be a non-zero unsigned 64-bit integer`);
  }
}

/**
 * True when removing `removing` from the voters would leave the cluster unable to reach a quorum
 * with the voters reachable right now: either the change itself cannot commit under the current
 * configuration, or the configuration after it has fewer reachable voters than its quorum.
 * Removing a non-voter never changes quorum.
 */
export function wouldBreakQuorum(voters: readonly RaftId[], reachable: ReadonlySet<RaftId>, removing: RaftId): boolean {
  if (!voters.includes(removing)) return false;
  const quorumOf = (n: number): number => Math.floor(n / 2) + 1;
  const reachableNow = voters.filter((v) => reachable.has(v)).length;
  if (reachableNow < quorumOf(voters.length)) return true;
  const after = voters.filter((v) => v !== removing);
  if (after.length === 0) return true;
  const reachableAfter = after.filter((v) => reachable.has(v)).length;
  return reachableAfter < quorumOf(after.length);
}

export function encodeMemberContext(member: RaftMemberInfo): Uint8Array {
  return RaftMember.encode({ raftId: member.raftId, nodeId: member.nodeId, addr: member.addr, voter: false }).finish();
}

/** Decodes a ConfChange context; an empty or foreign context yields undefined (an ID-only change). */
export function decodeMemberContext(context: Uint8Array, raftId: RaftId): RaftMemberInfo | undefined {
  if (context.length === 0) return undefined;
  if (context.length > MAX_MEMBER_CONTEXT_BYTES) {
    throw new ShoalError("RAFT_LOG_CORRUPT", `a membership change context is ${context.length} bytes, over the ${MAX_MEMBER_CONTEXT_BYTES}-byte bound`);
  }
  let decoded: RaftMember;
  try {
    decoded = RaftMember.decode(context);
  } catch (err) {
    throw new ShoalError("RAFT_LOG_CORRUPT", "a membership change carries an undecodable member context", { cause: err });
  }
  if (decoded.raftId !== raftId) {
    throw new ShoalError("RAFT_LOG_CORRUPT", `a membership change for raft ID ${raftId} carries the context of raft ID ${decoded.raftId}`);
  }
  return { raftId, nodeId: decoded.nodeId, addr: decoded.addr };
}

/** The node-level part of every snapshot: member addresses and removed IDs, which ConfState lacks. */
export interface MembershipImage {
  members: RaftMemberInfo[];
  removedIds: RaftId[];
}

const ENVELOPE_VERSION = 1;

/**
 * Snapshot data = version byte, then protobuf fields: 1 repeated RaftMember, 2 repeated fixed64
 * removed IDs, 3 the state machine's bytes (absent in the founding snapshot). Wrapping keeps member addresses alive across log
 * compaction, where the ConfChange entries that carried them are gone.
 */
export function encodeSnapshotEnvelope(image: MembershipImage, appData: Uint8Array | undefined): Uint8Array {
  const writer = new BinaryWriter();
  for (const m of image.members) {
    RaftMember.encode({ raftId: m.raftId, nodeId: m.nodeId, addr: m.addr, voter: false }, writer.uint32(10).fork()).join();
  }
  for (const id of image.removedIds) writer.uint32(17).fixed64(id);
  // Absent (not empty) for the founding snapshot, which has no state-machine image to restore.
  if (appData !== undefined) writer.uint32(26).bytes(appData);
  const body = writer.finish();
  const out = new Uint8Array(body.length + 1);
  out[0] = ENVELOPE_VERSION;
  out.set(body, 1);
  return out;
}

export function decodeSnapshotEnvelope(data: Uint8Array): { image: MembershipImage; appData?: Uint8Array } {
  if (data.length === 0 || data[0] !== ENVELOPE_VERSION) {
    throw new ShoalError("RAFT_LOG_CORRUPT", `snapshot data has an unknown envelope version ${data[0] ?? "(empty)"}; this node cannot read it`);
  }
  const image: MembershipImage = { members: [], removedIds: [] };
  let appData: Uint8Array | undefined;
  try {
    const reader = new BinaryReader(data.subarray(1));
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      switch (tag >>> 3) {
        case 1: {
          const m = RaftMember.decode(reader, reader.uint32());
          image.members.push({ raftId: m.raftId, nodeId: m.nodeId, addr: m.addr });
          break;
        }
        case 2:
          image.removedIds.push(BigInt(reader.fixed64()));
          break;
        case 3:
          appData = reader.bytes();
          break;
        default:
          reader.skip(tag & 7);
      }
    }
  } catch (err) {
    throw new ShoalError("RAFT_LOG_CORRUPT", "snapshot envelope does not decode", { cause: err });
  }
  return { image, appData };
}

/** Members as the status API shows them: every voter and learner, with addresses where known. */
export function describeMembers(conf: ConfState, known: ReadonlyMap<RaftId, RaftMemberInfo>): RaftMemberStatus[] {
  const row = (raftId: RaftId, voter: boolean): RaftMemberStatus => {
    const info = known.get(raftId);
    return { raftId, nodeId: info?.nodeId ?? "", addr: info?.addr ?? "", voter };
  };
  return [...conf.voters.map((id) => row(id, true)), ...conf.learners.map((id) => row(id, false))];
}
