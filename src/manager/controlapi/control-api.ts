// The Control service over the replicated store (leader only; followers forward). The rules that
// protect the cluster live here: quorum-safe demote and remove, remove-and-revoke, autolock and
// unlock-key changes, join token rotation, and read views that never carry a secret.
import type * as grpc from "@grpc/grpc-js";
import { ShoalError, isShoalError } from "../../base/errors.js";
import { isValidId, newId } from "../../base/ids.js";
import { checkExternalCA, externalCAOrigin, JoinTokenSet, MIN_NODE_CERT_VALIDITY_MS } from "../../ca/index.js";
import { generateUnlockKey } from "../../crypto/index.js";
import { wouldBreakQuorum } from "../../raft/node/index.js";
import {
  ManagerStatus_Reachability,
  NodeRole,
  NodeState,
  type Cluster,
  type Node,
} from "../../proto/shoal/v1/objects.js";
import {
  UpdateClusterRequest_Autolock,
  ControlService,
  type ControlServer,
  type CreateSecretRequest,
  type CreateSecretResponse,
  type CreateServiceRequest,
  type CreateServiceResponse,
  type GetClusterResponse,
  type GetJoinTokenRequest,
  type GetJoinTokenResponse,
  type GetNodeRequest,
  type GetNodeResponse,
  type GetSecretRequest,
  type GetSecretResponse,
  type GetServiceRequest,
  type GetServiceResponse,
  type GetUnlockKeyRequest,
  type GetUnlockKeyResponse,
  type GetValueRequest,
  type GetValueResponse,
  type ListNodesResponse,
  type ListSecretsResponse,
  type ListServicesResponse,
  type ListTasksRequest,
  type ListTasksResponse,
  type PutValueRequest,
  type PutValueResponse,
  type RemoveNodeRequest,
  type RemoveNodeResponse,
  type RemoveSecretRequest,
  type RemoveServiceRequest,
  type UpdateClusterRequest,
  type UpdateClusterResponse,
  type UpdateNodeRequest,
  type UpdateNodeResponse,
  type UpdateServiceRequest,
  type UpdateServiceResponse,
} from "../../proto/shoal/v1/control.js";
import { redactCluster, redactSecret, retryOnVersionConflict } from "../../state/index.js";
import { requireCluster } from "../caserver/ca-server.js";
import type { ManagerContext } from "../context.js";
import { unary } from "../handlers.js";
import type { PrefetchStatusSource } from "../prefetch/job-views.js";
import { prefetchHandlers } from "./prefetch.js";
import { rootCaHandlers } from "./root-ca.js";
import { isKeylessRoot, keylessNoExternalCaRefused } from "../keyless.js";
import { pingRegistryLogin, registryHandlers, type RegistryLoginCheck } from "./registries.js";
import { createService, removeService, updateService } from "./services.js";

/** Longest join token expiry accepted (10 years): anything above is a typo. */
export const MAX_TOKEN_EXPIRY_SECONDS = 10n * 365n * 24n * 3600n;
/** Longest certificate validity accepted (10 years). */
export const MAX_CERT_EXPIRY_SECONDS = 10n * 365n * 24n * 3600n;

type Handler<Req, Res> = (request: Req) => Promise<Res>;

/** One promise-returning function per Control method; the same object serves the socket and TLS. */
/**
 * The streaming methods are not among these handlers: the log broker serves ServiceLogs
 * (src/manager/logbroker/) and the local event history serves Events.
 */
export type ControlStreamingMethod = "serviceLogs" | "events";
export type ControlMethod = Exclude<keyof typeof ControlService, ControlStreamingMethod>;
export type ControlHandlers = {
  [K in ControlMethod]: ControlServer[K] extends grpc.handleUnaryCall<infer Req, infer Res> ? Handler<Req, Res> : never;
};

function checkId(id: string, what: string): void {
  if (!isValidId(id)) throw new ShoalError("INVALID_ARGUMENT", `${what} must be 25 characters of [0-9a-z]`);
}

function mustGet<T>(value: T | undefined, what: string, id: string): T {
  if (value === undefined) throw new ShoalError("NOT_FOUND", `${what} ${id} does not exist`);
  return value;
}

/** Reads go to the leader too, so a client sees its own writes whichever manager it talks to. */
export function controlHandlers(
  ctx: ManagerContext,
  hooks: { afterDemote?: (node: Node) => Promise<void>; checkRegistryLogin?: RegistryLoginCheck; prefetchStatus?: PrefetchStatusSource } = {},
): ControlHandlers {
  const withManagerStatus = (node: Node): Node => {
    if (node.managerStatus === undefined || node.managerStatus.raftId === 0n) return node;
    const status = ctx.raft.status();
    const member = status.members.find((m) => m.raftId === node.managerStatus!.raftId);
    const reachable = ctx.raft.isLeader ? ctx.reachableVoters().has(node.managerStatus.raftId) || member?.voter === false : undefined;
    return {
      ...node,
      managerStatus: {
        ...node.managerStatus,
        leader: status.leaderId === node.managerStatus.raftId,
        voter: member?.voter ?? false,
        reachability:
          member === undefined
            ? ManagerStatus_Reachability.REACHABILITY_UNREACHABLE
            : reachable === undefined
              ? ManagerStatus_Reachability.REACHABILITY_UNKNOWN
              : reachable
                ? ManagerStatus_Reachability.REACHABILITY_REACHABLE
                : ManagerStatus_Reachability.REACHABILITY_UNREACHABLE,
      },
    };
  };

  const leaderOnly = <Req, Res>(fn: Handler<Req, Res>): Handler<Req, Res> => {
    return async (req) => {
      ctx.requireLeader();
      return fn(req);
    };
  };

  /** Quorum check for taking a voter away: the reachable voters left must still form a majority. */
  const checkQuorumWithout = (raftId: bigint, what: string): void => {
    const voters = ctx.raft.status().members.filter((m) => m.voter).map((m) => m.raftId);
    if (!voters.includes(raftId)) return;
    if (voters.length === 1) throw new ShoalError("FAILED_PRECONDITION", `${what} would leave the cluster without managers; promote another node first`);
    if (wouldBreakQuorum(voters, ctx.reachableVoters(), raftId)) {
      throw new ShoalError(
        "FAILED_PRECONDITION",
        `${what} would leave fewer reachable managers than a quorum; bring the down managers back (or remove them) first`,
      );
    }
  };

  const updateClusterWith = (mutate: (cluster: Cluster) => void): Promise<Cluster> =>
    retryOnVersionConflict(async () => {
      const cluster = structuredClone(requireCluster(ctx));
      mutate(cluster);
      await ctx.propose((tx) => tx.updateCluster(cluster));
      return cluster;
    });

  const handlers: ControlHandlers = {
    ...registryHandlers({
      cluster: () => requireCluster(ctx),
      updateCluster: updateClusterWith,
      nowMs: () => ctx.clock.nowMs(),
      logger: ctx.logger,
      check: hooks.checkRegistryLogin ?? pingRegistryLogin,
    }),
    ...prefetchHandlers(ctx.store, hooks.prefetchStatus),
    ...rootCaHandlers({
      cluster: () => requireCluster(ctx),
      nodes: () => ctx.store.listNodes(),
      updateCluster: updateClusterWith,
      currentRoot: () => ctx.rootCA(),
      clock: ctx.clock,
      logger: ctx.logger,
    }),
    getNode: async (req: GetNodeRequest): Promise<GetNodeResponse> => {
      checkId(req.nodeId, "node_id");
      return { node: withManagerStatus(mustGet(ctx.store.getNode(req.nodeId), "node", req.nodeId)) };
    },
    listNodes: async (): Promise<ListNodesResponse> => ({ nodes: ctx.store.listNodes().map(withManagerStatus) }),

    updateNode: async (req: UpdateNodeRequest): Promise<UpdateNodeResponse> => {
      checkId(req.nodeId, "node_id");
      if (req.spec === undefined) throw new ShoalError("INVALID_ARGUMENT", "spec is required");
      const node = mustGet(ctx.store.getNode(req.nodeId), "node", req.nodeId);
      if (![NodeRole.NODE_ROLE_MANAGER, NodeRole.NODE_ROLE_WORKER].includes(req.spec.desiredRole)) {
        throw new ShoalError("INVALID_ARGUMENT", "desired role must be manager or worker");
      }
      const demoting = node.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER && req.spec.desiredRole === NodeRole.NODE_ROLE_WORKER;
      const raftId = node.managerStatus?.raftId ?? 0n;
      if (demoting && raftId !== 0n) checkQuorumWithout(raftId, `demoting manager ${node.id}`);
      const updated: Node = { ...structuredClone(node), spec: structuredClone(req.spec), meta: { ...node.meta!, version: req.nodeVersion } };
      // A demoted manager's ManagerStatus goes in the same write: if it is this (leading) manager, it
      // may not be leader any more once the raft removal below is applied.
      if (demoting) updated.managerStatus = undefined;
      await ctx.propose((tx) => tx.updateNode(updated));
      if (demoting && raftId !== 0n) {
        if (ctx.raft.status().members.some((m) => m.raftId === raftId)) await ctx.raft.removeMember(raftId);
        await hooks.afterDemote?.(updated);
      }
      return { node: withManagerStatus(ctx.store.getNode(req.nodeId) ?? updated) };
    },

    removeNode: async (req: RemoveNodeRequest): Promise<RemoveNodeResponse> => {
      checkId(req.nodeId, "node_id");
      const node = mustGet(ctx.store.getNode(req.nodeId), "node", req.nodeId);
      if (node.id === ctx.nodeId) throw new ShoalError("FAILED_PRECONDITION", "a manager cannot remove itself; run `shoal node rm` on another manager, or `shoal leave`");
      const raftId = node.managerStatus?.raftId ?? 0n;
      const member = raftId === 0n ? undefined : ctx.raft.status().members.find((m) => m.raftId === raftId);
      const isManager = node.role === NodeRole.NODE_ROLE_MANAGER || node.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER || member !== undefined;
      if (isManager) {
        if (!req.force) {
          throw new ShoalError("FAILED_PRECONDITION", `node ${node.id} is a manager: demote it first (\`shoal node demote\`), or use --force if it is down`);
        }
        // Raft reachability decides (the dispatcher's READY can lag a leader change by a heartbeat TTL).
        const reachable = member !== undefined ? ctx.reachableVoters().has(raftId) : node.status?.state === NodeState.NODE_STATE_READY;
        if (reachable) {
          throw new ShoalError("FAILED_PRECONDITION", `manager ${node.id} is still reachable: demote it first (\`shoal node demote\`), then remove it`);
        }
        if (member !== undefined) {
          checkQuorumWithout(raftId, `removing manager ${node.id}`);
          await ctx.raft.removeMember(raftId);
        }
      } else if (node.status?.state === NodeState.NODE_STATE_READY && !req.force) {
        throw new ShoalError("FAILED_PRECONDITION", `node ${node.id} is ready: drain and stop it first, or use --force to remove it anyway`);
      }
      // The removal carries the node's version; a raft member removal just above makes the
      // membership code update the node concurrently, so a conflict is redone on the fresh node.
      await retryOnVersionConflict(() => ctx.propose((tx) => tx.removeNodeAndRevoke(node.id, { removedAt: new Date(ctx.clock.nowMs()) })));
      ctx.logger.info({ removedNodeId: node.id }, "node removed and its certificates revoked");
      return {};
    },

    createService: async (req: CreateServiceRequest): Promise<CreateServiceResponse> => ({ service: await createService(ctx, req) }),
    getService: async (req: GetServiceRequest): Promise<GetServiceResponse> => {
      checkId(req.serviceId, "service_id");
      return { service: mustGet(ctx.store.getService(req.serviceId), "service", req.serviceId) };
    },
    listServices: async (): Promise<ListServicesResponse> => ({ services: ctx.store.listServices() }),
    updateService: async (req: UpdateServiceRequest): Promise<UpdateServiceResponse> => ({ service: await updateService(ctx, req) }),
    removeService: async (req: RemoveServiceRequest) => {
      await removeService(ctx, req.serviceId);
      return {};
    },
    listTasks: async (req: ListTasksRequest): Promise<ListTasksResponse> => {
      if (req.serviceId !== "") checkId(req.serviceId, "service_id");
      if (req.nodeId !== "") checkId(req.nodeId, "node_id");
      return { tasks: ctx.store.listTasks({ serviceId: req.serviceId || undefined, nodeId: req.nodeId || undefined }) };
    },

    createSecret: async (req: CreateSecretRequest): Promise<CreateSecretResponse> => {
      if (req.spec === undefined) throw new ShoalError("INVALID_ARGUMENT", "spec is required");
      const id = newId();
      await ctx.propose((tx) => tx.createSecret({ id, meta: undefined, spec: req.spec, dataMac: "", sizeBytes: 0 }));
      const secret = ctx.store.getSecret(id);
      return { secret: secret === undefined ? undefined : redactSecret(secret) };
    },
    getSecret: async (req: GetSecretRequest): Promise<GetSecretResponse> => {
      checkId(req.secretId, "secret_id");
      return { secret: redactSecret(mustGet(ctx.store.getSecret(req.secretId), "secret", req.secretId)) };
    },
    listSecrets: async (): Promise<ListSecretsResponse> => ({ secrets: ctx.store.listSecrets().map(redactSecret) }),
    removeSecret: async (req: RemoveSecretRequest) => {
      checkId(req.secretId, "secret_id");
      await ctx.propose((tx) => tx.removeSecret(req.secretId));
      return {};
    },

    getCluster: async (): Promise<GetClusterResponse> => ({ cluster: redactCluster(requireCluster(ctx)) }),

    updateCluster: async (req: UpdateClusterRequest): Promise<UpdateClusterResponse> => {
      const expiry = req.nodeCertExpirySeconds;
      if (expiry !== 0n && (expiry * 1000n < BigInt(MIN_NODE_CERT_VALIDITY_MS) || expiry > MAX_CERT_EXPIRY_SECONDS)) {
        throw new ShoalError("INVALID_ARGUMENT", "the certificate expiry must be between 1 hour and 10 years");
      }
      if (!Object.values(UpdateClusterRequest_Autolock).includes(req.autolock)) throw new ShoalError("INVALID_ARGUMENT", "autolock must be unchanged, on or off");
      const current = requireCluster(ctx);
      if (req.clusterVersion !== 0n && current.meta?.version !== req.clusterVersion) {
        throw new ShoalError("VERSION_CONFLICT", `the cluster was changed by someone else (version ${current.meta?.version}, expected ${req.clusterVersion}); read it again and retry`);
      }
      const wasOn = current.spec?.encryptionConfig?.autolockManagers === true;
      let unlockKey = "";
      const cluster = structuredClone(current);
      cluster.spec ??= { name: "default", caConfig: undefined, encryptionConfig: undefined, raftConfig: undefined };
      // Each setting of caConfig changes alone: the expiry keeps the external CA and the other way round.
      if (expiry !== 0n) cluster.spec.caConfig = { externalCa: undefined, ...cluster.spec.caConfig, nodeCertExpirySeconds: expiry };
      if (req.updateExternalCa) {
        const externalCa = req.externalCa === undefined || req.externalCa.url === "" ? undefined : checkExternalCA(req.externalCa);
        if (externalCa === undefined && isKeylessRoot(current.rootCa)) throw keylessNoExternalCaRefused();
        cluster.spec.caConfig = { nodeCertExpirySeconds: 0n, ...cluster.spec.caConfig, externalCa };
        ctx.logger.info({ externalCa: externalCa === undefined ? "none" : externalCAOrigin(externalCa) }, externalCa === undefined ? "node certificates are signed with the managers' key again" : "node certificates are now signed by an external CA");
      }
      if (req.autolock === UpdateClusterRequest_Autolock.AUTOLOCK_ON && !wasOn) {
        unlockKey = generateUnlockKey();
        cluster.spec.encryptionConfig = { autolockManagers: true };
        cluster.unlockKey = unlockKey;
      } else if (req.autolock === UpdateClusterRequest_Autolock.AUTOLOCK_OFF && wasOn) {
        cluster.spec.encryptionConfig = { autolockManagers: false };
        cluster.unlockKey = "";
      }
      await ctx.propose((tx) => tx.updateCluster(cluster));
      return { cluster: redactCluster(requireCluster(ctx)), unlockKey };
    },

    getJoinToken: async (req: GetJoinTokenRequest): Promise<GetJoinTokenResponse> => {
      if (req.role !== NodeRole.NODE_ROLE_WORKER && req.role !== NodeRole.NODE_ROLE_MANAGER) {
        throw new ShoalError("INVALID_ARGUMENT", "role must be worker or manager");
      }
      if (req.expiresInSeconds > MAX_TOKEN_EXPIRY_SECONDS) throw new ShoalError("INVALID_ARGUMENT", "a token may expire at most 10 years from now");
      if (req.expiresInSeconds !== 0n && !req.rotate) throw new ShoalError("INVALID_ARGUMENT", "an expiry applies to a new token: rotate it");
      const role = req.role === NodeRole.NODE_ROLE_MANAGER ? "swarm-manager" : "swarm-worker";
      let tokens = JoinTokenSet.fromProto(requireCluster(ctx).rootCa!.joinTokens!, ctx.rootCA());
      if (req.rotate) {
        const cluster = await updateClusterWith((c) => {
          const set = JoinTokenSet.fromProto(c.rootCa!.joinTokens!, ctx.rootCA());
          const expiresAt = req.expiresInSeconds === 0n ? undefined : new Date(ctx.clock.nowMs() + Number(req.expiresInSeconds) * 1000);
          set.rotate(role, { expiresAt });
          c.rootCa!.joinTokens = set.toProto();
        });
        tokens = JoinTokenSet.fromProto(cluster.rootCa!.joinTokens!, ctx.rootCA());
        ctx.logger.info({ role }, "join token rotated");
      }
      return { token: tokens.token(role), expiresAt: tokens.expiresAt(role) };
    },

    getUnlockKey: async (req: GetUnlockKeyRequest): Promise<GetUnlockKeyResponse> => {
      const cluster = requireCluster(ctx);
      if (cluster.spec?.encryptionConfig?.autolockManagers !== true) return { unlockKey: "" };
      if (!req.rotate) return { unlockKey: cluster.unlockKey };
      const rotated = await updateClusterWith((c) => {
        c.unlockKey = generateUnlockKey();
      });
      ctx.logger.info({}, "unlock key rotated");
      return { unlockKey: rotated.unlockKey };
    },

    putValue: async (req: PutValueRequest): Promise<PutValueResponse> => {
      const expected = req.expectedIndex;
      if (expected === undefined) {
        const result = await ctx.propose((tx) => tx.putValue(req.key, req.value));
        return { index: BigInt(result.index) };
      }
      // The store checks the version again when the entry applies; reading up to the commit index
      // first makes a refusal at prepare one that a linearizable read would also have seen (a new
      // leader may not have applied its predecessor's last entries yet).
      await ctx.raft.readIndex();
      try {
        const result = await ctx.propose((tx) => tx.putValue(req.key, req.value, expected === 0n ? { ifAbsent: true } : { ifVersion: expected }));
        return { index: BigInt(result.index) };
      } catch (err) {
        if (!isShoalError(err, "ALREADY_EXISTS") && !isShoalError(err, "NOT_FOUND")) throw err;
        const what = expected === 0n ? "exists" : "does not exist";
        throw new ShoalError("VERSION_CONFLICT", `key ${JSON.stringify(req.key)} ${what} (expected index ${expected}); read it again and retry`);
      }
    },
    getValue: async (req: GetValueRequest): Promise<GetValueResponse> => {
      // ReadIndex: confirms with a quorum that this manager still leads and waits until it applied
      // everything committed before the read, so a deposed leader never answers from stale state.
      await ctx.raft.readIndex();
      const entry = ctx.store.getValue(req.key);
      return entry === undefined ? { found: false, value: Buffer.alloc(0), index: 0n } : { found: true, value: entry.value, index: entry.version };
    },
  };
  const guarded = {} as Record<string, Handler<unknown, unknown>>;
  for (const [name, fn] of Object.entries(handlers)) guarded[name] = leaderOnly(fn as Handler<unknown, unknown>);
  return guarded as ControlHandlers;
}

/** The TLS form of the Control service (manager certificates only, enforced by the authorizer). */
export function controlServiceImplementation(
  handlers: ControlHandlers,
  logger: ManagerContext["logger"],
  streaming: Pick<ControlServer, ControlStreamingMethod>,
): ControlServer {
  const impl = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(handlers)) impl[name] = unary((req: unknown) => (fn as Handler<unknown, unknown>)(req), logger);
  Object.assign(impl, streaming);
  return impl as unknown as ControlServer;
}
