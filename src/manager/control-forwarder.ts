// Control calls from a manager's local socket: handled here when this manager leads, otherwise
// forwarded to the leader with this manager's own certificate, following leader changes.
//
// Retries never apply a write twice. A forwarded call is sent again only when it certainly did not
// change anything: the connection to the leader could not be made before sending (so nothing was
// sent), or the leader's handler answered NOT_LEADER (it refuses before proposing, and raft refuses a
// proposal on a follower before it enters the log). When the connection breaks or the deadline passes
// after a write was sent, the leader may have applied it, so the caller gets OUTCOME_UNKNOWN and
// decides (reads are simply asked again). This was chosen over idempotent writes (a proposal ID picked
// by the first manager and a replicated set of recent IDs checked on apply): that needs a new piece
// of replicated, snapshotted state in the store for a case that the operator can resolve by looking.
import * as grpc from "@grpc/grpc-js";
import type { Clock } from "../base/clock.js";
import { ShoalError, isShoalError } from "../base/errors.js";
import { ControlClient, ControlService, type ServiceLogsMessage, type ServiceLogsRequest } from "../proto/shoal/v1/control.js";
import { createSecureChannel, type SecureChannel } from "../transport/client.js";
import { ERROR_CODE_METADATA, fromGrpcError } from "../transport/errors.js";
import type { RevocationState } from "../transport/revocation.js";
import type { NodeIdentityPem } from "../transport/server.js";
import type { ControlHandlers } from "./controlapi/control-api.js";
import { MAX_QUEUED_CLIENT_BYTES, type LogSink } from "./logbroker/log-broker.js";

/** How long a forwarded control call waits for a leader before saying quorum is lost. */
export const LEADER_WAIT_MS = 3_000;
export const FORWARD_DEADLINE_MS = 10_000;
const RETRY_PAUSE_MS = 25;
/** How long one attempt waits for a connection to the leader before counting it unreachable. */
const CONNECT_TIMEOUT_MS = 1_000;

/** Reads (and the read form of join-token / unlock-key) change nothing, so they may be sent again. */
export function isReadOnlyControlCall(method: ControlMethod, request: unknown): boolean {
  if (method === "getJoinToken" || method === "getUnlockKey") return (request as { rotate?: boolean }).rotate !== true;
  return method.startsWith("get") || method.startsWith("list");
}

/** The leader could not be reached before anything was sent. */
class NotSentError extends ShoalError {}

export type ControlMethod = keyof ControlHandlers;

export interface ControlForwarderOptions {
  /** Deadlines, the leader wait and retry pauses run on it. */
  clock: Clock;
  clusterId: string;
  rootCaPem: string;
  identity: () => NodeIdentityPem;
  revocation?: RevocationState;
  isLeader: () => boolean;
  /** The leader's address when known and it is not this manager. */
  leaderAddr: () => string | undefined;
  /** Runs the call on this manager (it leads). */
  local: (method: ControlMethod, request: unknown) => Promise<unknown>;
  /** After a leader turned out unreachable, how long to wait for raft to elect another. */
  unreachableWaitMs: number;
  deadlineMs?: number;
  leaderWaitMs?: number;
}

export class ControlForwarder {
  private channel: { addr: string; channel: SecureChannel; client: ControlClient } | undefined;
  private readonly deadlineMs: number;
  private readonly leaderWaitMs: number;

  constructor(private readonly opts: ControlForwarderOptions) {
    this.deadlineMs = opts.deadlineMs ?? FORWARD_DEADLINE_MS;
    this.leaderWaitMs = opts.leaderWaitMs ?? LEADER_WAIT_MS;
  }

  /** The node certificate changed: the next call dials with the new one. */
  identityChanged(): void {
    this.close();
  }

  close(): void {
    this.channel?.channel.close();
    this.channel = undefined;
  }

  /** Waits briefly for a leader; NO_QUORUM if none shows up. Undefined: this manager leads. */
  async leaderAddrOrWait(): Promise<string | undefined> {
    const clock = this.opts.clock;
    const deadline = clock.nowMs() + this.leaderWaitMs;
    for (;;) {
      if (this.opts.isLeader()) return undefined;
      const addr = this.opts.leaderAddr();
      if (addr !== undefined) return addr;
      if (clock.nowMs() > deadline) {
        throw new ShoalError("NO_QUORUM", "the cluster has no leader: a majority of managers is unreachable (quorum lost); bring managers back online, then retry");
      }
      await clock.sleep(50);
    }
  }

  async call(method: ControlMethod, request: unknown): Promise<unknown> {
    const clock = this.opts.clock;
    const deadline = clock.nowMs() + this.deadlineMs;
    // A leader we could not reach: wait for raft to notice and elect another instead of hammering it.
    let unreachable: { addr: string; untilMs: number } | undefined;
    for (;;) {
      const leaderAddr = await this.leaderAddrOrWait();
      const retry = async (err: unknown): Promise<void> => {
        if (clock.nowMs() > deadline) throw err;
        await clock.sleep(RETRY_PAUSE_MS);
      };
      if (leaderAddr === undefined) {
        try {
          return await this.opts.local(method, request);
        } catch (err) {
          if (!isShoalError(err, "NOT_LEADER")) throw err;
          await retry(err);
          continue;
        }
      }
      if (unreachable !== undefined && unreachable.addr === leaderAddr && clock.nowMs() < unreachable.untilMs) {
        await retry(new ShoalError("UNAVAILABLE", `the leader at ${leaderAddr} is unreachable and no other leader was elected yet; retry shortly`));
        continue;
      }
      try {
        return await this.forward(leaderAddr, method, request);
      } catch (err) {
        if (isShoalError(err, "NOT_LEADER")) {
          await retry(err);
          continue;
        }
        if (err instanceof NotSentError || (err instanceof InFlightError && isReadOnlyControlCall(method, request))) {
          unreachable = { addr: leaderAddr, untilMs: clock.nowMs() + this.opts.unreachableWaitMs };
          await retry(err instanceof InFlightError ? err.cause : err);
          continue;
        }
        if (err instanceof InFlightError) {
          throw new ShoalError(
            "OUTCOME_UNKNOWN",
            `the connection to the leader at ${leaderAddr} failed after the request was sent, so it may or may not have been applied; check the current state (e.g. \`shoal node ls\`, \`shoal service ls\`) before retrying`,
            { cause: err.cause },
          );
        }
        throw err;
      }
    }
  }

  /**
   * Forwards a `service logs` stream to the leader at `addr` (the caller checked that this manager
   * does not lead). Lines go to `sink` as they come; returns the function that cancels the stream.
   * Not retried: a stream that breaks ends with its error, and the user runs the command again.
   */
  forwardServiceLogs(addr: string, request: ServiceLogsRequest, sink: LogSink): () => void {
    const client = this.clientFor(addr);
    const call = client.serviceLogs(request, new grpc.Metadata());
    let done = false;
    const end = (err?: ShoalError): void => {
      if (done) return;
      done = true;
      sink.end(err);
    };
    call.on("data", (msg: ServiceLogsMessage) => {
      if (done) return;
      if (sink.queuedBytes() > MAX_QUEUED_CLIENT_BYTES) {
        call.cancel();
        end(new ShoalError("QUEUE_FULL", "the client reads the logs too slowly; the stream was ended"));
        return;
      }
      sink.write(msg.lines);
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) end(fromGrpcError(err));
      else end();
    });
    call.on("end", () => end());
    return () => {
      done = true;
      call.cancel();
    };
  }

  private clientFor(addr: string): ControlClient {
    if (this.channel?.addr !== addr) {
      this.close();
      const identity = this.opts.identity();
      const channel = createSecureChannel(addr, {
        rootCaPem: this.opts.rootCaPem,
        certPem: identity.certPem,
        keyPem: identity.keyPem,
        expectServerRole: "swarm-manager",
        clusterId: this.opts.clusterId,
        revocation: this.opts.revocation,
        maxReceiveMessageBytes: 16 * 1024 * 1024,
        maxSendMessageBytes: 16 * 1024 * 1024,
      });
      this.channel = { addr, channel, client: channel.client(ControlClient) };
    }
    return this.channel.client;
  }

  private forward(addr: string, method: ControlMethod, request: unknown): Promise<unknown> {
    const client = this.clientFor(addr);
    const def = (ControlService as unknown as Record<string, { path: string; requestSerialize: (v: unknown) => Buffer; responseDeserialize: (b: Buffer) => unknown }>)[method]!;
    const nowMs = this.opts.clock.nowMs();
    const sendBy = nowMs + this.deadlineMs;
    // Connected first, so that a failure here means the request was certainly never sent.
    return connected(client, addr, Math.min(sendBy, nowMs + CONNECT_TIMEOUT_MS), this.opts.clock).then(
      () =>
        new Promise((resolve, reject) => {
          client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, new grpc.Metadata(), { deadline: sendBy }, (err, value) => {
            if (!err) resolve(value);
            // An answer from the leader's handler carries its stable code; anything else is the transport.
            else if (err.metadata?.get(ERROR_CODE_METADATA).length > 0) reject(fromGrpcError(err));
            else reject(new InFlightError(fromGrpcError(err)));
          });
        }),
    );
  }
}

/**
 * Resolves once the channel is READY; rejects with NotSentError as soon as the connection attempt
 * fails (a dead leader refuses at once, and raft may already know a new one) or at `byMs`.
 * grpc-js's waitForReady would keep waiting through failed attempts until its deadline.
 */
function connected(client: grpc.Client, addr: string, byMs: number, clock: Clock): Promise<void> {
  const channel = client.getChannel();
  const notSent = (why: string): NotSentError =>
    new NotSentError("UNAVAILABLE", `cannot connect to the leader at ${addr} (${why}); retrying while raft elects another`);
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const state = channel.getConnectivityState(true);
      if (state === grpc.connectivityState.READY) resolve();
      else if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) reject(notSent("connection failed"));
      else if (clock.nowMs() >= byMs) reject(notSent("timed out"));
      else channel.watchConnectivityState(state, byMs, (err) => (err ? reject(notSent("timed out")) : check()));
    };
    check();
  });
}

/** The transport failed after the request was handed to the connection: the leader may have applied it. */
class InFlightError extends Error {
  constructor(override readonly cause: ShoalError) {
    super(cause.message);
  }
}
