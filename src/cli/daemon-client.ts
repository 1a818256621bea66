// The CLI's connection to the local daemon: finds the control socket and wraps the LocalNode and
// Control gRPC clients (insecure credentials: the unix socket is 0600 and never leaves the host)
// as promise-returning calls that throw ShoalError with the server's stable code.
import * as grpc from "@grpc/grpc-js";
import { resolve } from "node:path";
import { ShoalError } from "../base/errors.js";
import { ERROR_CODE_METADATA, fromGrpcError } from "../transport/errors.js";
import {
  LocalNodeClient,
  type InfoResponse,
  type InitRequest,
  type InitResponse,
  type JoinRequest,
  type JoinResponse,
  type LeaveRequest,
  type UnlockRequest,
} from "../proto/shoal/v1/local.js";
import {
  ControlClient,
  type CreateSecretRequest,
  type RegistryLoginRequest,
  type CreateServiceRequest,
  type GetJoinTokenRequest,
  type GetJoinTokenResponse,
  type GetRootCAResponse,
  type RotateRootCARequest,
  type RotateRootCAResponse,
  type GetUnlockKeyRequest,
  type ListTasksRequest,
  type RemoveNodeRequest,
  type UpdateClusterRequest,
  type UpdateClusterResponse,
  type UpdateNodeRequest,
  type UpdateServiceRequest,
  type ClusterEvent,
  type EventsMessage,
  type EventsRequest,
  type ServiceLogsMessage,
  type ServiceLogsRequest,
  type PrefetchJobStatus,
} from "../proto/shoal/v1/control.js";
import type { Cluster, LogLine, Node, RegistryAuth, Secret, Service, Task } from "../proto/shoal/v1/objects.js";

export const DEFAULT_DATA_DIR = "/var/lib/shoal";
export const SOCKET_FILE_NAME = "shoal.sock";
/** Most calls answer in milliseconds; a slow one means a stuck leader election, reported as unavailable. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Init and join issue certificates and may wait for a leader, so they get longer. */
export const LIFECYCLE_CALL_TIMEOUT_MS = 120_000;

export interface SocketOptions {
  socket?: string;
  dataDir?: string;
}

/** `--socket`, else `SHOAL_SOCKET`, else `<--data-dir or /var/lib/shoal>/shoal.sock` (DESIGN.md §5). */
export function resolveSocketPath(options: SocketOptions, env: Record<string, string | undefined>): string {
  if (options.socket !== undefined && options.socket.length > 0) return resolve(options.socket);
  const fromEnv = env["SHOAL_SOCKET"];
  if (fromEnv !== undefined && fromEnv.length > 0) return resolve(fromEnv);
  return resolve(options.dataDir ?? DEFAULT_DATA_DIR, SOCKET_FILE_NAME);
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

export class DaemonClient {
  readonly socketPath: string;
  #local: LocalNodeClient | undefined;
  #control: ControlClient | undefined;

  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  private get local(): LocalNodeClient {
    this.#local ??= new LocalNodeClient(`unix://${this.socketPath}`, grpc.credentials.createInsecure());
    return this.#local;
  }

  private get control(): ControlClient {
    this.#control ??= new ControlClient(`unix://${this.socketPath}`, grpc.credentials.createInsecure());
    return this.#control;
  }

  close(): void {
    this.#local?.close();
    this.#control?.close();
  }

  private call<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, timeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<Res> {
    return new Promise<Res>((resolvePromise, reject) => {
      method(request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error !== null) reject(this.translate(error, timeoutMs));
        else resolvePromise(response);
      });
    });
  }

  /**
   * A status without the Shoal code in its metadata did not come from a Shoal handler: it is the
   * transport failing to reach the socket, which deserves its own sentence.
   */
  private translate(error: grpc.ServiceError, timeoutMs: number): ShoalError {
    const fromServer = error.metadata?.get(ERROR_CODE_METADATA)?.[0] !== undefined;
    if (!fromServer && error.code === grpc.status.UNAVAILABLE) {
      if (/EACCES|permission denied/i.test(error.details)) {
        return new ShoalError(
          "PERMISSION_DENIED",
          `permission denied on the Shoal control socket ${this.socketPath}: run shoal as the user that owns it (usually root)`,
          { cause: error },
        );
      }
      return new ShoalError("UNAVAILABLE", `cannot reach the Shoal daemon at ${this.socketPath}: is \`shoal daemon\` running?`, {
        cause: error,
      });
    }
    if (!fromServer && error.code === grpc.status.DEADLINE_EXCEEDED) {
      return new ShoalError(
        "TIMEOUT",
        `the Shoal daemon at ${this.socketPath} did not answer within ${Math.round(timeoutMs / 1000)} s: check that a leader is elected (\`shoal info\`) and retry`,
        { cause: error },
      );
    }
    return fromGrpcError(error);
  }

  // LocalNode: lifecycle calls served only on the socket.
  info(): Promise<InfoResponse> {
    return this.call(this.local.info.bind(this.local), {});
  }
  /** `externalCa` and `caCertPem` are for `shoal init --external-ca` only; left out, the managers make and hold the root. */
  init(request: Omit<InitRequest, "externalCa" | "caCertPem"> & Partial<Pick<InitRequest, "externalCa" | "caCertPem">>): Promise<InitResponse> {
    return this.call(this.local.init.bind(this.local), { externalCa: undefined, caCertPem: Buffer.alloc(0), ...request }, LIFECYCLE_CALL_TIMEOUT_MS);
  }
  join(request: JoinRequest): Promise<JoinResponse> {
    return this.call(this.local.join.bind(this.local), request, LIFECYCLE_CALL_TIMEOUT_MS);
  }
  async unlock(request: UnlockRequest): Promise<void> {
    await this.call(this.local.unlock.bind(this.local), request);
  }
  async leave(request: LeaveRequest): Promise<void> {
    await this.call(this.local.leave.bind(this.local), request, LIFECYCLE_CALL_TIMEOUT_MS);
  }

  // Control: the cluster's objects.
  async getNode(nodeId: string): Promise<Node> {
    const res = await this.call(this.control.getNode.bind(this.control), { nodeId });
    return required(res.node, "node");
  }
  async listNodes(): Promise<Node[]> {
    return (await this.call(this.control.listNodes.bind(this.control), {})).nodes;
  }
  async updateNode(request: UpdateNodeRequest): Promise<Node> {
    return required((await this.call(this.control.updateNode.bind(this.control), request)).node, "node");
  }
  async removeNode(request: RemoveNodeRequest): Promise<void> {
    await this.call(this.control.removeNode.bind(this.control), request);
  }
  async createService(request: CreateServiceRequest): Promise<Service> {
    return required((await this.call(this.control.createService.bind(this.control), request)).service, "service");
  }
  async getService(serviceId: string): Promise<Service> {
    return required((await this.call(this.control.getService.bind(this.control), { serviceId })).service, "service");
  }
  async listServices(): Promise<Service[]> {
    return (await this.call(this.control.listServices.bind(this.control), {})).services;
  }
  async updateService(request: UpdateServiceRequest): Promise<Service> {
    return required((await this.call(this.control.updateService.bind(this.control), request)).service, "service");
  }
  async removeService(serviceId: string): Promise<void> {
    await this.call(this.control.removeService.bind(this.control), { serviceId });
  }
  async listTasks(request: ListTasksRequest): Promise<Task[]> {
    return (await this.call(this.control.listTasks.bind(this.control), request)).tasks;
  }
  async createSecret(request: CreateSecretRequest): Promise<Secret> {
    return required((await this.call(this.control.createSecret.bind(this.control), request)).secret, "secret");
  }
  async getSecret(secretId: string): Promise<Secret> {
    return required((await this.call(this.control.getSecret.bind(this.control), { secretId })).secret, "secret");
  }
  async listSecrets(): Promise<Secret[]> {
    return (await this.call(this.control.listSecrets.bind(this.control), {})).secrets;
  }
  async removeSecret(secretId: string): Promise<void> {
    await this.call(this.control.removeSecret.bind(this.control), { secretId });
  }
  async getCluster(): Promise<Cluster> {
    return required((await this.call(this.control.getCluster.bind(this.control), {})).cluster, "cluster");
  }
  /** The external CA is left unchanged unless the request says otherwise. */
  updateCluster(request: Omit<UpdateClusterRequest, "updateExternalCa" | "externalCa"> & Partial<Pick<UpdateClusterRequest, "updateExternalCa" | "externalCa">>): Promise<UpdateClusterResponse> {
    return this.call(this.control.updateCluster.bind(this.control), { updateExternalCa: false, externalCa: undefined, ...request });
  }
  getRootCa(): Promise<GetRootCAResponse> {
    return this.call(this.control.getRootCa.bind(this.control), {});
  }
  rotateRootCa(request: RotateRootCARequest): Promise<RotateRootCAResponse> {
    return this.call(this.control.rotateRootCa.bind(this.control), request);
  }
  getJoinToken(request: GetJoinTokenRequest): Promise<GetJoinTokenResponse> {
    return this.call(this.control.getJoinToken.bind(this.control), request);
  }
  async registryLogin(request: RegistryLoginRequest): Promise<RegistryAuth> {
    return required((await this.call(this.control.registryLogin.bind(this.control), request)).registry, "registry");
  }
  async listRegistries(): Promise<RegistryAuth[]> {
    return (await this.call(this.control.listRegistries.bind(this.control), {})).registries;
  }
  async registryLogout(registry: string): Promise<void> {
    await this.call(this.control.registryLogout.bind(this.control), { registry });
  }
  /** The leader's prefetch jobs, of one service (a name or an ID) or of all (""). */
  async listPrefetchJobs(service: string): Promise<PrefetchJobStatus[]> {
    return (await this.call(this.control.listPrefetchJobs.bind(this.control), { service })).jobs;
  }
  async getUnlockKey(request: GetUnlockKeyRequest): Promise<string> {
    return (await this.call(this.control.getUnlockKey.bind(this.control), request)).unlockKey;
  }

  /**
   * `service logs`: calls `onLines` with each batch as it arrives. `done` settles when the stream
   * ends (without --follow, once every node sent its tail); `cancel` ends it from this side.
   */
  serviceLogs(request: ServiceLogsRequest, onLines: (lines: LogLine[]) => void): { done: Promise<void>; cancel: () => void } {
    const call = this.control.serviceLogs(request, new grpc.Metadata());
    let cancelled = false;
    const done = new Promise<void>((resolvePromise, reject) => {
      call.on("data", (msg: ServiceLogsMessage) => onLines(msg.lines));
      call.on("error", (error: grpc.ServiceError) => {
        if (cancelled && error.code === grpc.status.CANCELLED) resolvePromise();
        else reject(this.translate(error, DEFAULT_CALL_TIMEOUT_MS));
      });
      call.on("end", () => resolvePromise());
    });
    return {
      done,
      cancel: () => {
        cancelled = true;
        call.cancel();
      },
    };
  }

  /**
   * `shoal events`: calls `onEvents` with each batch as it arrives. `done` settles when the stream
   * ends (with no_follow, after the replay); `cancel` ends it from this side (done then resolves).
   * A stream that breaks after it opened (the daemon went away) rejects with UNAVAILABLE.
   */
  events(request: EventsRequest, onEvents: (events: ClusterEvent[]) => void): { done: Promise<void>; cancel: () => void } {
    const call = this.control.events(request, new grpc.Metadata());
    let cancelled = false;
    let opened = false;
    const done = new Promise<void>((resolvePromise, reject) => {
      call.on("metadata", () => (opened = true));
      call.on("data", (msg: EventsMessage) => {
        opened = true;
        onEvents(msg.events);
      });
      call.on("error", (error: grpc.ServiceError) => {
        if (cancelled && error.code === grpc.status.CANCELLED) {
          resolvePromise();
          return;
        }
        const fromServer = error.metadata?.get(ERROR_CODE_METADATA)?.[0] !== undefined;
        if (opened && !fromServer) {
          reject(new ShoalError("UNAVAILABLE", `the event stream from the Shoal daemon at ${this.socketPath} broke (${error.details || "connection lost"}): is \`shoal daemon\` still running?`, { cause: error }));
          return;
        }
        reject(this.translate(error, DEFAULT_CALL_TIMEOUT_MS));
      });
      call.on("end", () => resolvePromise());
    });
    return {
      done,
      cancel: () => {
        cancelled = true;
        call.cancel();
      },
    };
  }
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new ShoalError("INTERNAL", `the daemon answered without a ${what}: this is a bug in the daemon, please report it`);
  return value;
}
