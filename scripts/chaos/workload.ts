// The chaos run's clients: each one a closed loop of reads, writes and compare-and-sets on a small
// key set through one manager's socket, recording every operation's invocation, completion and
// result for the linearizability checker. An operation whose outcome the client cannot know (a
// timeout, OUTCOME_UNKNOWN, a broken connection after the request went out) is recorded as unknown;
// one that certainly never reached the daemon (its socket refused the connection) is not recorded.
import * as grpc from "@grpc/grpc-js";
import { performance } from "node:perf_hooks";
import { isShoalError, type ShoalError } from "../../src/base/errors.js";
import type { Random } from "../../src/base/random.js";
import { ControlClient, type GetValueResponse, type PutValueRequest, type PutValueResponse } from "../../src/proto/shoal/v1/control.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import type { HistoryOp, KvInput, KvOutput, KvValue } from "../../cluster-sim/linearizability.js";
import type { NodeProcess } from "../lib/process-cluster.js";
import { sleep } from "../lib/wait.js";

/** Longer than the forwarder's own 10 s deadline, so a slow answer is still an answer. */
export const CLIENT_DEADLINE_MS = 15_000;
/** How long a client waits for its socket to accept a connection before counting the op as not sent. */
const CONNECT_WAIT_MS = 1_000;
/** Pause after an op that could not be sent (the manager is down), so a client does not spin. */
const NOT_SENT_PAUSE_MS = 200;

export interface RecordedOp extends HistoryOp {
  /** The raft index the op wrote (put, successful cas) or read (get), when it completed. */
  index?: string;
  /** The error code of a failed or unknown op. */
  error?: string;
  /** The manager whose socket the client used. */
  via: string;
}

export interface WorkloadCounts {
  ok: number;
  /** Definite refusals: compare-and-set conflicts. */
  casConflicts: number;
  /** Never sent: the socket refused the connection (the manager was down). */
  notSent: number;
  unknown: number;
}

export interface WorkloadOptions {
  clients: number;
  keys: number;
  managers: readonly NodeProcess[];
  random: Random;
  /** Milliseconds since the run's start; the history's time base. */
  nowMs: () => number;
  /** Think time between one client's ops, in ms (uniform in [0, maxThinkMs]). */
  maxThinkMs: number;
}

export class Workload {
  readonly history: RecordedOp[] = [];
  readonly counts: WorkloadCounts = { ok: 0, casConflicts: 0, notSent: 0, unknown: 0 };
  private running = true;
  private nextId = 1;
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly opts: WorkloadOptions) {}

  keyName(i: number): string {
    return `chaos/k${i}`;
  }

  start(): void {
    for (let c = 0; c < this.opts.clients; c++) this.loops.push(this.clientLoop(c));
  }

  /** Stops issuing new ops and waits for the ones in flight (each bounded by the client deadline). */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async clientLoop(clientId: number): Promise<void> {
    const via = this.opts.managers[clientId % this.opts.managers.length]!;
    // Per key, the value this client last saw and the raft index that wrote it.
    const known = new Map<string, { value: string; index: bigint }>();
    let seq = 0;
    let client = via.newControlClient();
    try {
      while (this.running) {
        if (!(await socketReady(client))) {
          // The daemon is down or restarting: nothing was sent. A fresh channel picks up the new socket.
          this.counts.notSent++;
          client.close();
          await sleep(NOT_SENT_PAUSE_MS);
          client = via.newControlClient();
          continue;
        }
        const key = this.keyName(this.opts.random.int(0, this.opts.keys));
        const roll = this.opts.random.float();
        const value = `c${clientId}-${++seq}`;
        let input: KvInput;
        let request: PutValueRequest | undefined;
        if (roll < 0.4) {
          input = { kind: "get", key };
        } else if (roll < 0.7) {
          input = { kind: "put", key, value };
          request = { key, value: Buffer.from(value) };
        } else {
          const last = known.get(key);
          const expected: KvValue = last?.value ?? null;
          input = { kind: "cas", key, expected, value };
          request = { key, value: Buffer.from(value), expectedIndex: last?.index ?? 0n };
        }
        const op: RecordedOp = { id: this.nextId++, clientId, input, invokeMs: this.opts.nowMs(), returnMs: Infinity, via: via.name };
        this.history.push(op);
        try {
          if (request === undefined) {
            const res = await getValue(client, key);
            const seen: KvValue = res.found ? Buffer.from(res.value).toString("utf8") : null;
            op.output = { kind: "get", value: seen };
            op.index = String(res.index);
            if (seen === null) known.delete(key);
            else known.set(key, { value: seen, index: res.index });
          } else {
            const res = await putValue(client, request);
            op.output = input.kind === "put" ? { kind: "put" } : ({ kind: "cas", ok: true } satisfies KvOutput);
            op.index = String(res.index);
            known.set(key, { value, index: res.index });
          }
          op.returnMs = this.opts.nowMs();
          this.counts.ok++;
        } catch (err) {
          const shoal = err as ShoalError;
          op.error = shoal.code;
          if (input.kind === "cas" && isShoalError(err, "VERSION_CONFLICT")) {
            // Refused when the entry applied (or after a linearizable read): a definite "no".
            op.output = { kind: "cas", ok: false };
            op.returnMs = this.opts.nowMs();
            this.counts.casConflicts++;
            known.delete(key);
          } else {
            // Anything else may or may not have taken effect: the op stays open forever.
            this.counts.unknown++;
            known.delete(key);
          }
        }
        if (this.opts.maxThinkMs > 0) await sleep(this.opts.random.int(0, this.opts.maxThinkMs + 1));
      }
    } finally {
      client.close();
    }
  }
}

/** Whether the channel to the socket is (or becomes, within CONNECT_WAIT_MS) connected. */
function socketReady(client: grpc.Client): Promise<boolean> {
  const channel = client.getChannel();
  const byMs = Date.now() + CONNECT_WAIT_MS;
  return new Promise((resolve) => {
    const check = (): void => {
      const state = channel.getConnectivityState(true);
      if (state === grpc.connectivityState.READY) resolve(true);
      else if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN || Date.now() >= byMs) resolve(false);
      else channel.watchConnectivityState(state, byMs, (err) => (err ? resolve(false) : check()));
    };
    check();
  });
}

function getValue(client: ControlClient, key: string): Promise<GetValueResponse> {
  return new Promise((ok, fail) =>
    client.getValue({ key }, new grpc.Metadata(), { deadline: Date.now() + CLIENT_DEADLINE_MS }, (err, res) => (err ? fail(fromGrpcError(err)) : ok(res))),
  );
}

function putValue(client: ControlClient, request: PutValueRequest): Promise<PutValueResponse> {
  return new Promise((ok, fail) =>
    client.putValue(request, new grpc.Metadata(), { deadline: Date.now() + CLIENT_DEADLINE_MS }, (err, res) => (err ? fail(fromGrpcError(err)) : ok(res))),
  );
}

/** performance.now() since `startMs`: a monotonic time base for the history. */
export function monotonicSince(startMs: number): () => number {
  return () => performance.now() - startMs;
}
