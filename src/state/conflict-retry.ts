// Optimistic concurrency, caller's side: a write built from a read carries the versions it read, and
// the store refuses it with VERSION_CONFLICT when another writer got in between (a heartbeat, a
// leader loop, an operator). The read-modify-write is then redone on the fresh objects.
import { isShoalError } from "../base/errors.js";

/** Attempts of one read-modify-write before the conflict is the caller's to report. */
export const DEFAULT_CONFLICT_ATTEMPTS = 5;

/** Runs `attempt` (which must read afresh each time) until it does not fail with VERSION_CONFLICT, at most `attempts` times. */
export async function retryOnVersionConflict<T>(attempt: () => Promise<T>, attempts = DEFAULT_CONFLICT_ATTEMPTS): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isShoalError(err, "VERSION_CONFLICT") || n >= attempts) throw err;
    }
  }
}
