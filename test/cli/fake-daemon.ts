// A stand-in for the daemon's control socket: a real gRPC server on a unix socket in a temp dir,
// serving LocalNode and Control with handlers that record every request and answer with whatever
// the test scripted (a message, or a ShoalError sent the way the real server sends it).
import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ShoalError } from "../../src/base/errors.js";
import { toGrpcError } from "../../src/transport/errors.js";
import * as control from "../../src/proto/shoal/v1/control.js";
import * as local from "../../src/proto/shoal/v1/local.js";

interface Fns {
  fromPartial(object: object): unknown;
}

const RESPONSE_TYPES: Record<string, Fns> = {
  info: local.InfoResponse,
  init: local.InitResponse,
  join: local.JoinResponse,
  unlock: local.UnlockResponse,
  leave: local.LeaveResponse,
  getNode: control.GetNodeResponse,
  listNodes: control.ListNodesResponse,
  updateNode: control.UpdateNodeResponse,
  removeNode: control.RemoveNodeResponse,
  createService: control.CreateServiceResponse,
  getService: control.GetServiceResponse,
  listServices: control.ListServicesResponse,
  updateService: control.UpdateServiceResponse,
  removeService: control.RemoveServiceResponse,
  listTasks: control.ListTasksResponse,
  createSecret: control.CreateSecretResponse,
  getSecret: control.GetSecretResponse,
  listSecrets: control.ListSecretsResponse,
  removeSecret: control.RemoveSecretResponse,
  getCluster: control.GetClusterResponse,
  updateCluster: control.UpdateClusterResponse,
  getRootCa: control.GetRootCAResponse,
  getJoinToken: control.GetJoinTokenResponse,
  getUnlockKey: control.GetUnlockKeyResponse,
  putValue: control.PutValueResponse,
  getValue: control.GetValueResponse,
  registryLogin: control.RegistryLoginResponse,
  listRegistries: control.ListRegistriesResponse,
  registryLogout: control.RegistryLogoutResponse,
  listPrefetchJobs: control.ListPrefetchJobsResponse,
};

/** Answers one call: a partial response message, or a ShoalError to send as the gRPC error. */
export type Responder = (request: any, callIndex: number) => object | ShoalError;

export interface RecordedCall {
  method: string;
  request: any;
}

export class FakeDaemon {
  readonly dir: string;
  readonly socketPath: string;
  readonly calls: RecordedCall[] = [];
  private responders = new Map<string, Responder>();
  private server = new grpc.Server();

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "shoal-cli-"));
    this.socketPath = join(this.dir, "shoal.sock");
  }

  static async start(): Promise<FakeDaemon> {
    const fake = new FakeDaemon();
    fake.server.addService(local.LocalNodeService, fake.handlers(Object.keys(local.LocalNodeService)));
    fake.server.addService(control.ControlService, fake.handlers(Object.keys(control.ControlService)));
    await new Promise<void>((res, rej) =>
      fake.server.bindAsync(`unix://${fake.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? rej(err) : res())),
    );
    return fake;
  }

  private handlers(methods: string[]): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const method of methods) {
      if (method === "events") {
        // Server-streaming: { batches: EventsMessage[], error?: ShoalError, hangUp?: true, follow?: true }:
        // the batches, then the error, a status without a Shoal code (a daemon that went away), or,
        // with follow, an open stream until the client cancels it.
        impl[method] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
          const index = this.calls.filter((c) => c.method === method).length;
          this.calls.push({ method, request: call.request });
          const responder = this.responders.get(method);
          const answer = responder === undefined ? { batches: [] } : responder(call.request, index);
          if (answer instanceof ShoalError) {
            call.emit("error", toGrpcError(answer));
            return;
          }
          const { batches, error, hangUp, follow } = answer as { batches: object[]; error?: ShoalError; hangUp?: boolean; follow?: boolean };
          for (const batch of batches) call.write(control.EventsMessage.fromPartial(batch));
          if (error !== undefined) call.emit("error", toGrpcError(error));
          else if (hangUp === true) call.emit("error", Object.assign(new Error("Connection dropped"), { code: grpc.status.UNAVAILABLE, details: "Connection dropped" }));
          else if (follow !== true) call.end();
        }) as grpc.UntypedHandleCall;
        continue;
      }
      if (method === "serviceLogs") {
        // Server-streaming: the responder answers { batches: ServiceLogsMessage[], error?: ShoalError }
        // (the batches, then the error if any, as a stream that breaks) or an error at once.
        impl[method] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
          const index = this.calls.filter((c) => c.method === method).length;
          this.calls.push({ method, request: call.request });
          const responder = this.responders.get(method);
          const answer = responder === undefined ? { batches: [] } : responder(call.request, index);
          if (answer instanceof ShoalError) {
            call.emit("error", toGrpcError(answer));
            return;
          }
          const { batches, error } = answer as { batches: object[]; error?: ShoalError };
          for (const batch of batches) call.write(control.ServiceLogsMessage.fromPartial(batch));
          if (error !== undefined) call.emit("error", toGrpcError(error));
          else call.end();
        }) as grpc.UntypedHandleCall;
        continue;
      }
      impl[method] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const index = this.calls.filter((c) => c.method === method).length;
        this.calls.push({ method, request: call.request });
        const responder = this.responders.get(method);
        const answer = responder === undefined ? {} : responder(call.request, index);
        if (answer instanceof ShoalError) callback(toGrpcError(answer));
        else callback(null, RESPONSE_TYPES[method]!.fromPartial(answer));
      }) as grpc.UntypedHandleCall;
    }
    return impl;
  }

  /** Clears recorded calls and scripted answers; then scripts the given ones. */
  reset(responders: Record<string, Responder> = {}): void {
    this.calls.length = 0;
    this.responders = new Map(Object.entries(responders));
  }

  callsTo(method: string): any[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.request);
  }

  async stop(): Promise<void> {
    await new Promise<void>((res) => this.server.tryShutdown(() => res()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const BIN = resolve(import.meta.dirname, "../../bin/shoal.js");

/** Spawns the real `bin/shoal.js` (asynchronously, so this process's fake server can answer it). */
export function runShoal(args: string[], options: { stdin?: string | Buffer; env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((res, rej) => {
    const env: Record<string, string | undefined> = { ...process.env, SHOAL_SOCKET: undefined, ...options.env };
    for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: options.cwd ?? tmpdir(), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", rej);
    child.on("close", (code) => res({ code, stdout, stderr }));
    child.stdin.on("error", () => {}); // the CLI may exit before reading everything (oversized secret)
    child.stdin.end(options.stdin ?? "");
  });
}
