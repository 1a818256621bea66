// `shoal ca`: the cluster's root CA and the rotation in progress, and `--rotate` (a generated root,
// or an imported one checked before anything changes). The leader loop in
// leadership/root-rotation.ts takes the rotation from there.
import { ShoalError } from "../../base/errors.js";
import { createRootCA, crossSignRoot, importRootCA, RootCA } from "../../ca/index.js";
import type { Clock } from "../../base/clock.js";
import type { GetRootCAResponse, RootCertificateSummary, RotateRootCARequest, RotateRootCAResponse } from "../../proto/shoal/v1/control.js";
import type { Cluster, Node } from "../../proto/shoal/v1/objects.js";
import { isNodeDown, rootRotationProgress } from "../../state/index.js";
import { isKeylessRoot, keylessRotationRefused } from "../keyless.js";

/** Largest PEM accepted for an imported root certificate or key. */
export const MAX_IMPORTED_PEM_BYTES = 64 * 1024;

export interface RootCaHandlerDeps {
  cluster: () => Cluster;
  nodes: () => Node[];
  updateCluster: (mutate: (cluster: Cluster) => void) => Promise<Cluster>;
  /** The current root with its key (it cross-signs the new one). */
  currentRoot: () => RootCA;
  clock: Clock;
  logger: { info(obj: object, msg: string): void };
}

function summaryOf(pem: Uint8Array): RootCertificateSummary {
  const root = RootCA.fromCertOnly(Buffer.from(pem).toString("utf8"));
  return { subject: root.certificate.subject.split("\n").join(", "), fingerprint: root.fingerprint, notAfter: root.notAfter };
}

export function rootCaStatus(cluster: Cluster, nodes: readonly Node[]): GetRootCAResponse {
  const rootCa = cluster.rootCa;
  if (rootCa === undefined) throw new ShoalError("UNAVAILABLE", "the cluster has no root CA yet; retry in a moment");
  const progress = rootRotationProgress(cluster, nodes);
  const rotation = rootCa.rootRotation;
  return {
    root: summaryOf(rootCa.caCertPem),
    rotation:
      progress === undefined || rotation === undefined
        ? undefined
        : {
            target: summaryOf(rotation.caCertPem),
            nodesDone: progress.done.length,
            nodesTotal: progress.done.length + progress.waiting.length,
            waitingFor: progress.waiting.map((n) => ({ nodeId: n.id, hostname: n.description?.hostname ?? "", down: isNodeDown(n) })),
            startedAt: rotation.startedAt,
          },
    nodeCertExpirySeconds: cluster.spec?.caConfig?.nodeCertExpirySeconds ?? 0n,
    externalCa: cluster.spec?.caConfig?.externalCa,
    rootKeyHeld: !isKeylessRoot(rootCa),
  };
}

/** The root to rotate to: generated when no PEM is given, else the operator's, checked first. */
async function newRootFor(req: RotateRootCARequest, clock: Clock): Promise<RootCA> {
  const hasCert = req.caCertPem.length > 0;
  const hasKey = req.caKeyPem.length > 0;
  if (!hasCert && !hasKey) return createRootCA({ clock });
  if (hasCert !== hasKey) throw new ShoalError("INVALID_ARGUMENT", "give both --ca-cert and --ca-key, or neither to generate a new root");
  if (req.caCertPem.length > MAX_IMPORTED_PEM_BYTES || req.caKeyPem.length > MAX_IMPORTED_PEM_BYTES) {
    throw new ShoalError("INVALID_ARGUMENT", `the root CA certificate and key must each be at most ${MAX_IMPORTED_PEM_BYTES} bytes of PEM`);
  }
  return importRootCA(Buffer.from(req.caCertPem).toString("utf8"), Buffer.from(req.caKeyPem).toString("utf8"));
}

export function rootCaHandlers(deps: RootCaHandlerDeps) {
  return {
    getRootCa: async (): Promise<GetRootCAResponse> => rootCaStatus(deps.cluster(), deps.nodes()),

    rotateRootCa: async (req: RotateRootCARequest): Promise<RotateRootCAResponse> => {
      if (isKeylessRoot(deps.cluster().rootCa)) throw keylessRotationRefused();
      // The external CA signs every certificate under the new root: it must hold that root's key,
      // so a root only the managers know would leave every renewal refused.
      if (req.caCertPem.length === 0 && (deps.cluster().spec?.caConfig?.externalCa?.url ?? "") !== "") {
        throw new ShoalError("FAILED_PRECONDITION", "node certificates are signed by an external CA: rotate to a root it holds with --ca-cert and --ca-key, or run `shoal ca --no-external-ca` first");
      }
      const newRoot = await newRootFor(req, deps.clock);
      const current = deps.currentRoot();
      if (newRoot.fingerprint === current.fingerprint) {
        throw new ShoalError("FAILED_PRECONDITION", "that certificate is already the cluster's root CA; give another one, or none to generate one");
      }
      // The current root (not a previous target) signs: the nodes trust it throughout.
      const crossSigned = await crossSignRoot(current, newRoot, { clock: deps.clock });
      const replaced = deps.cluster().rootCa?.rootRotation !== undefined;
      const cluster = await deps.updateCluster((c) => {
        if (c.rootCa === undefined) throw new ShoalError("UNAVAILABLE", "the cluster has no root CA yet; retry in a moment");
        if (Buffer.compare(Buffer.from(c.rootCa.caCertPem), Buffer.from(current.certPem)) !== 0) {
          throw new ShoalError("VERSION_CONFLICT", "the root CA changed while the rotation was prepared; run `shoal ca --rotate` again");
        }
        c.rootCa.rootRotation = {
          caCertPem: Buffer.from(newRoot.certPem),
          caKeyPem: Buffer.from(newRoot.keyPem!),
          crossSignedCaCertPem: Buffer.from(crossSigned),
          startedAt: new Date(deps.clock.nowMs()),
        };
      });
      deps.logger.info({ target: newRoot.fingerprint, replacedTarget: replaced }, "root CA rotation started");
      return { status: rootCaStatus(cluster, deps.nodes()) };
    },
  };
}
