// The CA service (DESIGN.md §3 rule 1): the root CA for anyone, certificates for joiners holding a
// token (the node is created in the store with the token's role), renewals authenticated by the
// current certificate, and renewals of a manager's expired certificate authenticated by it plus the
// manager token (expired-peer-renewal.ts), with role and zone taken from the store. Only the leader signs.
import type * as grpc from "@grpc/grpc-js";
import { ShoalError, isShoalError } from "../../base/errors.js";
import { isValidId, newId } from "../../base/ids.js";
import { checkNoControlChars } from "../../base/text.js";
import { FailureLimiter, sourceAddressOf } from "../../transport/failure-limiter.js";
import { DEFAULT_NODE_CERT_VALIDITY_MS, DEFAULT_ZONE, externalCAOrigin, signWithExternalCA, JoinTokenSet, replacedRootDigests, verifyCsr, type IssuedNodeCertificate, type NodeRole } from "../../ca/index.js";
import {
  CertificateStatus,
  NodeAvailability,
  NodeRole as ProtoNodeRole,
  NodeState,
  type Cluster,
  type Node,
  type NodeCertificate,
} from "../../proto/shoal/v1/objects.js";
import type {
  CAServer,
  GetRootCACertificateResponse,
  IssueNodeCertificateRequest,
  IssueNodeCertificateResponse,
  NodeCertificateStatusRequest,
  NodeCertificateStatusResponse,
  RenewExpiredManagerCertificateRequest,
  RenewExpiredManagerCertificateResponse,
  RenewNodeCertificateRequest,
  RenewNodeCertificateResponse,
} from "../../proto/shoal/v1/ca.js";
import { ZONE_LABEL } from "../../state/index.js";
import type { ManagerContext } from "../context.js";
import { revokeOnDemotion } from "../demotion.js";
import { unary } from "../handlers.js";
import { IssuingRootCache } from "./issuing-root.js";
import { renewExpiredManagerForPeer } from "./expired-peer-renewal.js";

export const MAX_CSR_BYTES = 8 * 1024;
export const MAX_HOSTNAME_CHARS = 255;
export const MAX_ADDR_CHARS = 300;
const UPDATE_ATTEMPTS = 5;

export function protoRole(role: NodeRole): ProtoNodeRole {
  return role === "swarm-manager" ? ProtoNodeRole.NODE_ROLE_MANAGER : ProtoNodeRole.NODE_ROLE_WORKER;
}

export function certRole(role: ProtoNodeRole): NodeRole {
  return role === ProtoNodeRole.NODE_ROLE_MANAGER ? "swarm-manager" : "swarm-worker";
}

/** The node's certificate record after an issuance; `earlierSerials` keeps every serial for revocation. */
export function issuedCertificateRecord(issued: IssuedNodeCertificate, role: NodeRole, zone: string, earlierSerials: string[] = []): NodeCertificate {
  return {
    status: CertificateStatus.CERTIFICATE_STATUS_ISSUED,
    csr: Buffer.alloc(0),
    certificate: Buffer.from(issued.certPem),
    serial: issued.serial,
    notAfter: issued.notAfter,
    role: protoRole(role),
    zone,
    issuedSerials: [...earlierSerials, issued.serial],
    lastNotAfter: issued.notAfter,
  };
}

export function nodeZoneOf(node: Node): string {
  const zone = node.spec?.labels[ZONE_LABEL];
  return zone === undefined || zone === "" ? DEFAULT_ZONE : zone;
}

export function certValidityMs(cluster: Cluster): number {
  const seconds = cluster.spec?.caConfig?.nodeCertExpirySeconds ?? 0n;
  return seconds > 0n ? Number(seconds) * 1000 : DEFAULT_NODE_CERT_VALIDITY_MS;
}

export function requireCluster(ctx: ManagerContext): Cluster {
  const cluster = ctx.store.getCluster();
  if (cluster === undefined) throw new ShoalError("UNAVAILABLE", "this manager has not received the cluster state yet; retry in a moment");
  return cluster;
}

/** The CSR as the CA library takes it: PEM text, or DER bytes. */
function csrInput(csr: Uint8Array): string | Uint8Array {
  if (csr.length === 0) throw new ShoalError("CSR_INVALID", "the request carries no certificate signing request");
  if (csr.length > MAX_CSR_BYTES) throw new ShoalError("CSR_INVALID", `the certificate signing request is larger than ${MAX_CSR_BYTES} bytes`);
  const text = Buffer.from(csr.buffer, csr.byteOffset, csr.byteLength);
  const input = text.subarray(0, 5).toString("latin1") === "-----" ? text.toString("utf8") : csr;
  verifyCsr(input);
  return input;
}

/**
 * Signs a certificate for `node` as the store says (role, zone) and writes it to the store.
 * `presentedSerial`: the certificate that authenticated the request, left off a demotion's revocation.
 */
/** Root digests the replaced join tokens pin, other than the current root's (after a root CA rotation). */
function previousRootDigests(cluster: Cluster): string[] {
  return replacedRootDigests(cluster.rootCa?.joinTokens, cluster.rootCa?.caDigest ?? "");
}

const issuingRoots = new WeakMap<ManagerContext, IssuingRootCache>();

/**
 * Signs with the cluster's CA for the role and zone the store decided; validity from the cluster
 * spec. During a root rotation the new root signs and the chain carries its cross-signed
 * certificate, so nodes that still trust only the old root accept it.
 */
async function signNodeCertificate(
  ctx: ManagerContext,
  cluster: Cluster,
  args: { csr: string | Uint8Array; nodeId: string; role: NodeRole; zone: string },
): Promise<IssuedNodeCertificate> {
  let cache = issuingRoots.get(ctx);
  if (cache === undefined) issuingRoots.set(ctx, (cache = new IssuingRootCache()));
  const { rootCA, chainPem } = cache.issuing(cluster, () => ctx.rootCA());
  const externalCa = cluster.spec?.caConfig?.externalCa;
  if (externalCa !== undefined && externalCa.url !== "") {
    // The CSR was checked by the caller; the identity is the store's, as for our own signing.
    let issued: IssuedNodeCertificate;
    try {
      issued = await signWithExternalCA(externalCa, {
        csr: args.csr,
        nodeId: args.nodeId,
        clusterId: ctx.clusterId,
        role: args.role,
        zone: args.zone,
        issuingRoot: rootCA,
        validityMs: certValidityMs(cluster),
        clock: ctx.clock,
      });
    } catch (err) {
      const code = err instanceof ShoalError ? err.code : "INTERNAL";
      const fields = { nodeId: args.nodeId, role: args.role, zone: args.zone, externalCa: externalCAOrigin(externalCa), code, reason: err instanceof Error ? err.message : String(err) };
      if (code === "EXTERNAL_CA_MISMATCH") ctx.logger.warn({ event: "security", ...fields }, "the external CA returned a certificate other than the one asked for; refused, the node gets no certificate");
      else ctx.logger.warn(fields, "the external CA did not sign; the node gets no certificate");
      throw err;
    }
    ctx.logger.info({ nodeId: args.nodeId, role: args.role, serial: issued.serial, externalCa: externalCAOrigin(externalCa) }, "the external CA signed a node certificate");
    return chainPem === "" ? issued : { ...issued, certPem: issued.certPem + chainPem };
  }
  // Not reachable through the control API (--no-external-ca is refused without a key), but a store
  // that somehow lost the setting must say what is wrong, not that "this root" cannot sign.
  if (!rootCA.canSign) {
    throw new ShoalError("CA_KEY_NOT_HELD", "this cluster's managers hold no root CA key and no external CA is set, so no certificate can be signed: set the signer again with `shoal ca --external-ca protocol=cfssl,url=https://...`");
  }
  const issued = rootCA.issueNodeCertificate({
    csrPem: args.csr,
    nodeId: args.nodeId,
    role: args.role,
    clusterId: ctx.clusterId,
    zone: args.zone,
    validityMs: certValidityMs(cluster),
    clock: ctx.clock,
  });
  return chainPem === "" ? issued : { ...issued, certPem: issued.certPem + chainPem };
}

export async function issueForNode(
  ctx: ManagerContext,
  nodeId: string,
  csr: string | Uint8Array,
  presentedSerial?: string,
): Promise<{ certPem: string; role: NodeRole }> {
  for (let attempt = 1; ; attempt++) {
    ctx.requireLeader();
    const node = ctx.store.getNode(nodeId);
    if (node === undefined) {
      throw new ShoalError("NOT_FOUND", `node ${nodeId} is not in the cluster (it was removed); join again with a token`);
    }
    const cluster = requireCluster(ctx);
    const role = certRole(node.spec?.desiredRole ?? ProtoNodeRole.NODE_ROLE_WORKER);
    const zone = nodeZoneOf(node);
    const issued = await signNodeCertificate(ctx, cluster, { csr, nodeId, role, zone });
    const updated: Node = {
      ...node,
      role: protoRole(role),
      certificate: issuedCertificateRecord(issued, role, zone, node.certificate?.issuedSerials ?? []),
    };
    // A demoted manager's earlier manager certificates are revoked by serial in the same write (demotion.ts).
    const demoted = node.certificate?.role === ProtoNodeRole.NODE_ROLE_MANAGER && role === "swarm-worker";
    const revoking = demoted ? revokeOnDemotion(cluster, node, presentedSerial, new Date(ctx.clock.nowMs())) : undefined;
    try {
      await ctx.propose((tx) => {
        tx.updateNode(updated);
        if (revoking !== undefined) tx.updateCluster(revoking);
      });
      if (revoking !== undefined) ctx.logger.info({ demotedNodeId: nodeId }, "revoked the demoted manager's earlier certificates by serial");
      return { certPem: issued.certPem, role };
    } catch (err) {
      // Another writer (a heartbeat, an operator) changed the node in between: sign again on the fresh copy.
      if (!isShoalError(err, "VERSION_CONFLICT") || attempt >= UPDATE_ATTEMPTS) throw err;
    }
  }
}

/** A refused token (wrong, rotated, expired, malformed, another cluster's): what the join limiter counts. */
function isTokenFailure(err: unknown): boolean {
  return err instanceof ShoalError && err.code.startsWith("TOKEN_");
}

/** What the join limiter counts on the expired-manager path: a refused token, certificate or proof, or a removed node. */
function isExpiredRenewalFailure(err: unknown): boolean {
  return err instanceof ShoalError && (err.code.startsWith("TOKEN_") || err.code.startsWith("CERT_") || err.code === "UNAUTHENTICATED" || err.code === "NOT_FOUND" || err.code === "CSR_INVALID");
}

export function caServiceHandlers(ctx: ManagerContext): CAServer {
  const log = ctx.logger;
  // Wrong join tokens are slowed down per source address (transport/failure-limiter.ts).
  const joinLimiter = new FailureLimiter({ clock: ctx.clock, what: "join attempts from this address" });
  return {
    getRootCaCertificate: unary(async (): Promise<GetRootCACertificateResponse> => {
      const cluster = requireCluster(ctx);
      return { certificate: Buffer.from(cluster.rootCa?.caCertPem ?? Buffer.alloc(0)), previousCaDigests: previousRootDigests(cluster) };
    }, log),

    issueNodeCertificate: unary(async (req: IssueNodeCertificateRequest, call: grpc.ServerUnaryCall<IssueNodeCertificateRequest, IssueNodeCertificateResponse>): Promise<IssueNodeCertificateResponse> => {
      ctx.requireLeader();
      if (req.hostname.length > MAX_HOSTNAME_CHARS) throw new ShoalError("INVALID_ARGUMENT", `hostname is longer than ${MAX_HOSTNAME_CHARS} characters`);
      if (req.addr.length > MAX_ADDR_CHARS) throw new ShoalError("INVALID_ARGUMENT", `addr is longer than ${MAX_ADDR_CHARS} characters`);
      // Shown in `node ls` and `node inspect`: no terminal escapes or forged lines (base/text.ts).
      checkNoControlChars(req.hostname, "hostname");
      checkNoControlChars(req.addr, "addr");
      if (!Object.values(NodeAvailability).includes(req.availability)) throw new ShoalError("INVALID_ARGUMENT", "availability is not active, pause or drain");
      const cluster = requireCluster(ctx);
      const tokens = JoinTokenSet.fromProto(cluster.rootCa!.joinTokens!, ctx.rootCA());
      const role = await joinLimiter.run(sourceAddressOf(call), async () => tokens.match(req.token, ctx.clock), isTokenFailure);
      const csr = csrInput(req.csr);
      const nodeId = newId();
      const zone = DEFAULT_ZONE;
      const issued = await signNodeCertificate(ctx, cluster, { csr, nodeId, role, zone });
      const node: Node = {
        id: nodeId,
        meta: undefined,
        managerStatus: undefined,
        spec: { desiredRole: protoRole(role), availability: req.availability, labels: {} },
        description: { hostname: req.hostname, platform: `${process.platform}/${process.arch}`, engineVersion: "", engineLabels: {}, executors: [], resources: undefined },
        status: { state: NodeState.NODE_STATE_UNKNOWN, message: "joined", addr: req.addr, lastHeartbeat: undefined },
        certificate: issuedCertificateRecord(issued, role, zone),
        role: protoRole(role),
      };
      await ctx.propose((tx) => tx.createNode(node));
      log.info({ joinedNodeId: nodeId, role }, "node joined the cluster");
      return { nodeId, role: protoRole(role) };
    }, log),

    nodeCertificateStatus: unary(async (req: NodeCertificateStatusRequest): Promise<NodeCertificateStatusResponse> => {
      if (!isValidId(req.nodeId)) throw new ShoalError("INVALID_ARGUMENT", "node_id must be 25 characters of [0-9a-z]");
      const cluster = requireCluster(ctx);
      const node = ctx.store.getNode(req.nodeId);
      if (node === undefined) {
        // A follower may not have applied the join yet; the leader has.
        if (!ctx.raft.isLeader) ctx.requireLeader();
        throw new ShoalError("NOT_FOUND", `node ${req.nodeId} is not in the cluster`);
      }
      return {
        status: node.certificate?.status ?? CertificateStatus.CERTIFICATE_STATUS_UNSPECIFIED,
        certificate: Buffer.from(node.certificate?.certificate ?? Buffer.alloc(0)),
        rootCa: Buffer.from(cluster.rootCa?.caCertPem ?? Buffer.alloc(0)),
        role: node.role,
      };
    }, log),

    renewNodeCertificate: unary(async (req: RenewNodeCertificateRequest, call: grpc.ServerUnaryCall<RenewNodeCertificateRequest, RenewNodeCertificateResponse>) => {
      const peer = ctx.server.peerOf(call);
      ctx.requireLeader();
      const { certPem, role } = await issueForNode(ctx, peer.nodeId, csrInput(req.csr), peer.serial);
      log.info({ renewedNodeId: peer.nodeId, role }, "renewed a node certificate");
      return { nodeId: peer.nodeId, certificate: Buffer.from(certPem), role: protoRole(role) };
    }, log),

    renewExpiredManagerCertificate: unary(
      async (
        req: RenewExpiredManagerCertificateRequest,
        call: grpc.ServerUnaryCall<RenewExpiredManagerCertificateRequest, RenewExpiredManagerCertificateResponse>,
      ): Promise<RenewExpiredManagerCertificateResponse> => {
        ctx.requireLeader();
        const source = sourceAddressOf(call);
        const seen: { nodeId?: string; serial?: string } = {};
        try {
          const renewed = await joinLimiter.run(
            source,
            async () => renewExpiredManagerForPeer(ctx, req, () => csrInput(req.csr), (fields) => Object.assign(seen, fields)),
            isExpiredRenewalFailure,
          );
          log.warn(
            { event: "security", renewedNodeId: renewed.nodeId, previousSerial: renewed.previousSerial, expiredForMs: renewed.expiredForMs, source },
            "renewed the expired certificate of a manager (authenticated by the expired certificate and the manager token)",
          );
          return { nodeId: renewed.nodeId, certificate: renewed.certificate, role: renewed.role };
        } catch (err) {
          const code = err instanceof ShoalError ? err.code : "INTERNAL";
          // Never the token: only the code, the node the certificate names (if it got that far) and the source.
          if (code !== "NOT_LEADER") {
            log.warn(
              { event: "security", code, nodeId: seen.nodeId ?? "", serial: seen.serial ?? "", source, reason: err instanceof Error ? err.message : String(err) },
              "refused to renew an expired manager certificate",
            );
          }
          throw err;
        }
      },
      log,
    ),
  };
}
