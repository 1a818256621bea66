// Compare-and-set updates: read the object with its version, change the spec, write it back with
// that version; when another writer got there first the server answers VERSION_CONFLICT, and the
// whole read-modify-write is redone on the fresh object.
import { isShoalError, ShoalError } from "../base/errors.js";

export const MAX_UPDATE_ATTEMPTS = 5;

export async function retryOnVersionConflict<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isShoalError(err, "VERSION_CONFLICT")) throw err;
      if (i >= MAX_UPDATE_ATTEMPTS) {
        throw new ShoalError(
          "VERSION_CONFLICT",
          `${what} kept changing under us (${MAX_UPDATE_ATTEMPTS} attempts, last: ${err.message}): retry the command`,
          { cause: err },
        );
      }
    }
  }
}
