// The pure Raft core: a state machine the driver (src/raft/node, cluster-sim) feeds and drains.
export * from "./types.js";
export { RaftCore } from "./raft.js";
export { encodeConfChange, decodeConfChange } from "./confchange.js";
