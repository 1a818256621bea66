// src/storage: the encrypted LevelDB store, the DEK and node key files, key rotation and the
// durable Raft log.
export { EncryptedStore, describeKey, type StoreKeys, type StoreOp, type StoreRange, type WriteOptions } from "./encrypted-store.js";
export { readDekFile, writeDekFile, isDekFileWrapped } from "./dek-file.js";
export { readNodeKey, writeNodeKey, isNodeKeyEncrypted } from "./node-key.js";
export { rewrapKeys, rotateStoreDek } from "./key-rotation.js";
export { dataDirPaths, type DataDirPaths } from "./paths.js";
export { writeFileAtomic } from "./atomic-file.js";
export {
  RaftLogStorage,
  MAX_SNAPSHOT_CHUNK_BYTES,
  type RaftLogEntry,
  type RaftHardState,
  type RaftConfState,
  type RaftSnapshotMetadata,
  type RaftLogSnapshot,
  type LoadedRaftLog,
  type RaftLogUpdate,
  type RaftLogOptions,
} from "./raft-log.js";
