// The client side of RenewExpiredManagerCertificate (issue 11): `shoal daemon --renew-expired
// --renew-expired-token-file F` on a manager whose certificate expired while it was down, in a
// cluster whose other managers kept quorum. Before the manager role starts, it makes a new key, signs
// the proof with the expired certificate's key, and asks the managers it knows (not itself), each
// through a TLS channel pinned to the root the token's digest names, following leader redirects. A
// refusal (token, certificate, proof, removed or demoted node) ends it at once; a manager that does
// not answer lets it try the next one.
import * as grpc from "@grpc/grpc-js";
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import { ShoalError, isShoalError } from "../base/errors.js";
import { createNodeKeyAndCsr, parseJoinToken, RootCA, signExpiredRenewalProof, splitPemBundle, verifyNodeCertificate, type NodeCertificateInfo } from "../ca/index.js";
import { CAClient, type RenewExpiredManagerCertificateResponse } from "../proto/shoal/v1/ca.js";
import { createJoinChannel, fetchRootCA, unaryCall, type SecureChannel } from "../transport/client.js";
import { callWithLeaderRedirect, retryWhileElecting } from "../transport/leader.js";

const CALL_DEADLINE_MS = 20_000;
/** How long one manager's election (NOT_LEADER, NO_QUORUM) is waited out. */
const ELECTION_BUDGET_MS = 15_000;
/** Codes that mean "this manager did not answer": the next one is asked. */
const TRY_NEXT = new Set(["UNAVAILABLE", "TIMEOUT", "NOT_LEADER", "NO_QUORUM", "CERT_UNTRUSTED"]);

export interface ExpiredPeerRenewalArgs {
  /** Manager addresses this node knows (node.json); its own is skipped. */
  managers: readonly string[];
  selfAddr: string;
  token: string;
  expiredCertPem: string;
  oldKey: KeyObject;
  nodeId: string;
  clusterId: string;
  /** The trusted roots on disk (the new certificate must chain to one of them or to the token's root). */
  rootCaPem: string;
  clock: Clock;
  logger: Logger;
}

export interface ExpiredPeerRenewal {
  certPem: string;
  privateKey: KeyObject;
  info: NodeCertificateInfo;
  /** The manager that signed (the leader). */
  via: string;
}

export async function renewExpiredThroughLiveManager(args: ExpiredPeerRenewalArgs): Promise<ExpiredPeerRenewal> {
  // TOKEN_MALFORMED here, before anything is sent; the message never echoes the token.
  const { caDigest } = parseJoinToken(args.token);
  const candidates = [...new Set(args.managers)].filter((addr) => addr !== "" && addr !== args.selfAddr);
  if (candidates.length === 0) {
    throw new ShoalError("FAILED_PRECONDITION", "this manager knows no other manager to ask; if it is the cluster's last manager, start it with `shoal daemon --renew-expired` alone");
  }
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const csr = Buffer.from(csrPem);
  const proof = signExpiredRenewalProof(args.oldKey, { clusterId: args.clusterId, nodeId: args.nodeId, csr });
  let lastErr: unknown;
  for (const addr of candidates) {
    args.logger.info({ manager: addr }, "--renew-expired: asking a live manager to renew this manager's expired certificate");
    try {
      const tokenRootPem = await fetchRootCA(addr, caDigest, { timeoutMs: CALL_DEADLINE_MS });
      const result = await retryWhileElecting(
        {
          clock: args.clock,
          budgetMs: ELECTION_BUDGET_MS,
          onRetry: (err, delayMs) => args.logger.info({ code: err.code, retryInMs: delayMs }, "--renew-expired: the cluster is electing a leader; retrying"),
        },
        () =>
          callWithLeaderRedirect<SecureChannel, RenewExpiredManagerCertificateResponse>({
            address: addr,
            connect: (a) => createJoinChannel(a, tokenRootPem),
            call: (ch) =>
              unaryCall<RenewExpiredManagerCertificateResponse>((cb) =>
                ch
                  .client(CAClient)
                  .renewExpiredManagerCertificate(
                    { expiredCertificate: Buffer.from(args.expiredCertPem), csr, token: args.token, proof },
                    new grpc.Metadata(),
                    { deadline: Date.now() + CALL_DEADLINE_MS },
                    cb,
                  ),
              ),
          }),
      );
      result.connection.close();
      const certPem = Buffer.from(result.value.certificate).toString("utf8");
      const roots = [...splitPemBundle(args.rootCaPem), tokenRootPem].map((pem) => RootCA.fromCertOnly(pem));
      const info = verifyNodeCertificate(certPem, { rootCA: roots, clusterId: args.clusterId, roles: ["swarm-manager"], clock: args.clock });
      if (info.nodeId !== args.nodeId) throw new ShoalError("CERT_INVALID", `the manager returned a certificate for node ${info.nodeId}, not this one (${args.nodeId})`);
      return { certPem, privateKey, info, via: result.address };
    } catch (err) {
      if (!isShoalError(err) || !TRY_NEXT.has(err.code)) throw err;
      args.logger.warn({ manager: addr, code: err.code, err: err.message }, "--renew-expired: this manager did not answer; trying the next one");
      lastErr = err;
    }
  }
  throw new ShoalError(
    "UNAVAILABLE",
    `no live manager answered (${candidates.join(", ")}): ${lastErr instanceof Error ? lastErr.message : String(lastErr)}; ` +
      "start the other managers, or if this is the cluster's last manager start it with `shoal daemon --renew-expired` alone",
    { cause: lastErr },
  );
}
