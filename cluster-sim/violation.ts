// The error a checker throws when a run breaks a safety or liveness property; the harness turns it
// into a failed seed with a replay command.

export type ViolationKind =
  | "election-safety"
  | "log-matching"
  | "leader-completeness"
  | "state-machine-safety"
  | "commit-regression"
  | "commit-rule"
  | "unsynced-vote"
  | "unsynced-ack"
  | "unsynced-term"
  | "ready-contract"
  /** A node stopped (its `fatal` event) or could not start, other than on a corrupted log. */
  | "node-failed"
  | "client-result"
  | "linearizability"
  | "liveness"
  | "simulator-error";

export class SimViolation extends Error {
  constructor(
    readonly kind: ViolationKind,
    detail: string,
  ) {
    super(`${kind}: ${detail}`);
    this.name = "SimViolation";
  }
}
