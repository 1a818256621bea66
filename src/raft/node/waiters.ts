// Promises that callers of the Raft driver wait on, each with a deadline, settled exactly once.
// Proposals, conf changes and reads all need "resolve, reject, or time out — never hang".
import { ShoalError } from "../../base/errors.js";

export class Waiter<T> {
  readonly promise: Promise<T>;
  private resolveFn!: (value: T) => void;
  private rejectFn!: (err: Error) => void;
  private done = false;

  constructor(
    /** Absolute time (Clock milliseconds) after which the caller gets TIMEOUT. */
    readonly deadlineMs: number,
    /** Says what is being waited for, in TIMEOUT messages. */
    readonly what: string,
  ) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
  }

  get settled(): boolean {
    return this.done;
  }

  resolve(value: T): void {
    if (this.done) return;
    this.done = true;
    this.resolveFn(value);
  }

  reject(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.rejectFn(err);
  }

  /** Rejects with TIMEOUT when the deadline has passed; returns true if it did. */
  expireIfDue(nowMs: number): boolean {
    if (this.done || nowMs < this.deadlineMs) return false;
    this.reject(new ShoalError("TIMEOUT", `${this.what} did not finish before its deadline; its outcome is unknown, so check before retrying`));
    return true;
  }
}
