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
  | "ready-contract"
  | "core-threw"
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
