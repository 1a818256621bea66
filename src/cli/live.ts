// The loop behind every live display (`image prefetch status`, `service create` / `update` on a
// terminal): ask, show, pause REFRESH_MS, again, until the display says it is done or Ctrl-C.
// Ctrl-C ends it at once (neither a slow call nor the pause holds it up), and a call it abandons
// never surfaces its failure later. Time and the pause come from CliIo's clock, so tests drive it.
import { systemClock } from "../base/clock.js";
import type { CliIo } from "./context.js";

/** How often a live display asks the daemon again. */
export const REFRESH_MS = 500;

export type LiveEnd = "done" | "interrupted";

/**
 * Calls `load`, then `show` with what it loaded, at once and then every `intervalMs`, until `show`
 * returns true ("done") or Ctrl-C ("interrupted": nothing more is shown). An error of `load` or
 * `show` ends the loop with that error. The SIGINT listener is removed before it returns.
 */
export async function pollLive<T>(io: CliIo, load: () => Promise<T>, show: (value: T) => boolean, intervalMs = REFRESH_MS): Promise<LiveEnd> {
  const clock = io.clock ?? systemClock;
  let interrupted = false;
  let wake = (): void => {};
  // Resolves on Ctrl-C, so that neither a slow call nor the pause between frames holds it up.
  const interruption = new Promise<void>((resolve) => (wake = resolve));
  const unsubscribe =
    io.onInterrupt?.(() => {
      interrupted = true;
      wake();
    }) ?? (() => {});
  try {
    for (;;) {
      const loading = load();
      loading.catch(() => {}); // abandoned on Ctrl-C: its failure must not surface later
      const value = await Promise.race([loading, interruption]);
      if (interrupted) return "interrupted";
      if (show(value as T)) return "done";
      let timer: { cancel(): void } | undefined;
      await Promise.race([new Promise<void>((resolve) => (timer = clock.setTimeout(resolve, intervalMs))), interruption]);
      timer?.cancel();
      if (interrupted) return "interrupted";
    }
  } finally {
    unsubscribe();
  }
}
