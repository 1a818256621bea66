// The one polling helper of the child-process harness (tests, benchmarks, the demo, the chaos run).
import { ShoalError } from "../../src/base/errors.js";

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every `intervalMs` until it returns a value other than undefined or false, and
 * returns that value; throws TIMEOUT naming `what` (and the last error `check` threw) after
 * `timeoutMs`. Errors thrown by `check` count as "not yet".
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      throw new ShoalError("TIMEOUT", `timed out after ${timeoutMs} ms waiting for ${what}${lastError === "" ? "" : ` (last error: ${lastError})`}`);
    }
    await sleep(intervalMs);
  }
}
