// gRPC over mutual TLS for Shoal: server and client factories, per-RPC authorization, revocation,
// leader redirection and the raft wire codec. Other layers import from here.
export { ERROR_CODE_METADATA, LEADER_ADDR_METADATA, fromGrpcError, grpcStatusFor, leaderAddrOf, toGrpcError } from "./errors.js";
export { caPeerVerifier, certificateFingerprint, normaliseSerial, type NodeRole, type PeerIdentity, type PeerVerifier } from "./identity.js";
export { RevocationState, type RevocationChange, type RevocationListener, type RevocationSnapshot } from "./revocation.js";
export { Authorizer, defaultMethodPolicies, type AuthorizerOptions, type CurrentAccessCheck, type MethodPolicies, type MethodPolicy } from "./authz.js";
export {
  createSecureServer,
  checkIdentityPem,
  SecureServer,
  DEFAULT_KEEPALIVE,
  DEFAULT_MAX_MESSAGE_BYTES,
  MAX_MESSAGE_BYTES_LIMIT,
  type KeepaliveOptions,
  type ListenerKind,
  type NodeIdentityPem,
  type SecureServerOptions,
} from "./server.js";
export {
  createJoinChannel,
  createSecureChannel,
  fetchRootCA,
  serverIdentityCheck,
  unaryCall,
  MANAGER_TARGET_NAME,
  MAX_ROOT_CA_BYTES,
  type FetchRootCaOptions,
  type SecureChannel,
  type SecureChannelOptions,
} from "./client.js";
export { callWithLeaderRedirect, leaderHintOf, notLeaderError, DEFAULT_MAX_LEADER_HOPS, type Closable, type LeaderRedirectOptions } from "./leader.js";
export {
  messageFromProto,
  messageToProto,
  snapshotToChunks,
  SnapshotAssembler,
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_MESSAGE_TYPE,
  type SnapshotAssemblerOptions,
  type WireConfState,
  type WireEntry,
  type WireEntryType,
  type WireMessage,
  type WireMessageType,
  type WireSnapshot,
  type WireSnapshotMetadata,
} from "./raft-codec.js";
