// Leader loop: drops revocation entries 7 days after the last certificate of the node expired, so the
// list does not grow without end (a certificate past its expiry is refused anyway).
import { RevocationList } from "../../ca/index.js";
import { REVOCATION_GRACE_MS, type LeaderLoopFactory } from "../../state/index.js";

export const REVOCATION_GC_INTERVAL_MS = 10 * 60 * 1000;

export const revocationGcLoop: LeaderLoopFactory = {
  name: "revocation-gc",
  start(ctx) {
    let work: Promise<unknown> = Promise.resolve();
    let busy = false;
    const collect = (): void => {
      const now = new Date(ctx.clock.nowMs());
      const list = RevocationList.fromProto(ctx.store.getRevocationList());
      if (list.entries().every((e) => now.getTime() < e.lastCertNotAfter.getTime() + REVOCATION_GRACE_MS)) return;
      busy = true;
      work = ctx
        .update((tx) => tx.gcRevocations(now) > 0)
        .catch((err) => ctx.logger.warn({ err: String(err) }, "revocation GC failed; retried at the next interval"))
        .finally(() => (busy = false));
    };
    ctx.interval(collect, REVOCATION_GC_INTERVAL_MS);
    return {
      stop: () => undefined,
      get busy() {
        return busy;
      },
      idle: () => work.then(() => undefined),
    };
  },
};
