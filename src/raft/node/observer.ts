// What a RaftNode tells an onlooker (the daemon's metrics) as it runs: cheap calls on the loop's
// own path, each optional. The node measures no time itself: a `...Started` call returns the
// function to call when the thing ended, so whoever watches keeps its own timer (the simulator
// passes no observer and stays deterministic).
export interface RaftNodeObserver {
  /** A Ready that carried new log entries to persist: how many. */
  readyEntries?(entries: number): void;
  /** One synced write of a Ready starts; the returned function runs once it is on disk. */
  persistStarted?(): () => void;
  /** A proposal was handed to the node; the returned function runs when it was applied here (true) or failed. */
  proposalStarted?(): (applied: boolean) => void;
  /** The leader this node follows changed, or this node started or stopped leading. */
  leaderChanged?(): void;
  /** A snapshot was taken here (`taken`) or installed from the leader (`installed`), of `bytes`. */
  snapshot?(kind: "taken" | "installed", bytes: number): void;
}
