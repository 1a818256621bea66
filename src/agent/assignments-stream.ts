// The Assignments stream of a session: opened once the session is up, each message applied to the
// AssignmentSet; a gap (or an incremental before the complete set) closes the stream and opens a new
// one, which starts with a COMPLETE set. A stream that ends while the session lives is reopened with
// backoff; the session ending ends it.
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import { AssignmentsMessage_Type, type AssignmentsMessage } from "../proto/shoal/v1/dispatcher.js";
import type { AssignmentSet } from "./assignment-set.js";
import type { SessionLink } from "./session.js";

const REOPEN_MIN_MS = 50;
const REOPEN_MAX_MS = 2_000;

export interface AssignmentsStreamOptions {
  set: AssignmentSet;
  clock: Clock;
  logger: Logger;
  /** After every message applied; `complete` when it was a COMPLETE set (a new stream's first message). */
  onApplied: (set: AssignmentSet, complete: boolean) => void;
}

export class AssignmentsStream {
  private link: SessionLink | undefined;
  private stream: grpc.ClientReadableStream<AssignmentsMessage> | undefined;
  /** Streams opened so far (reopens after gaps included). */
  opened = 0;
  /** Gaps seen so far. */
  gaps = 0;

  constructor(private readonly opts: AssignmentsStreamOptions) {}

  connected(link: SessionLink): void {
    this.link = link;
    void this.loop(link);
  }

  disconnected(): void {
    this.link = undefined;
    this.stream?.cancel();
  }

  private async loop(link: SessionLink): Promise<void> {
    let delayMs = REOPEN_MIN_MS;
    while (this.link === link) {
      // A channel closed under the link (a renewal reconnects) throws at the call: the session ends too.
      const outcome = await this.runOnce(link).catch(() => "ended" as const);
      if (this.link !== link) return;
      if (outcome === "gap") {
        delayMs = REOPEN_MIN_MS;
        continue; // at once: the new stream starts with a full set
      }
      await this.opts.clock.sleep(delayMs);
      delayMs = Math.min(REOPEN_MAX_MS, delayMs * 2);
    }
  }

  private runOnce(link: SessionLink): Promise<"gap" | "ended"> {
    return new Promise((resolve) => {
      const { set } = this.opts;
      set.streamOpened();
      this.opened++;
      const stream = link.dispatcher.assignments({ sessionId: link.sessionId });
      this.stream = stream;
      let settled = false;
      const finish = (outcome: "gap" | "ended"): void => {
        if (settled) return;
        settled = true;
        if (this.stream === stream) this.stream = undefined;
        stream.cancel();
        resolve(outcome);
      };
      stream.on("data", (message: AssignmentsMessage) => {
        if (settled) return;
        const outcome = set.apply(message);
        if (!outcome.applied) {
          this.gaps++;
          this.opts.logger.info({ reason: outcome.reason }, "assignments out of sequence; reopening the stream for a complete set");
          finish("gap");
          return;
        }
        this.opts.onApplied(set, message.type === AssignmentsMessage_Type.TYPE_COMPLETE);
      });
      stream.on("error", (err: grpc.ServiceError) => {
        this.opts.logger.debug({ code: err.code, message: err.details }, "assignments stream ended");
        finish("ended");
      });
      stream.on("end", () => finish("ended"));
    });
  }
}
