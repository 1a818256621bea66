// Unary round trips per second over mutual TLS on 127.0.0.1 with the authorization interceptor and
// src/ca's certificate verifier on, at 1 and 64 concurrent callers, next to a baseline of plain
// grpc-js mTLS (createSsl, no interceptor) measured the same way on the same machine, because the
// absolute figures swing with machine load; prints one JSON object.
// Run: node --import tsx scripts/bench/transport-unary.ts [--duration-ms 3000]
import * as grpc from "@grpc/grpc-js";
import { performance } from "node:perf_hooks";
import { systemClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, type RootCA } from "../../src/ca/index.js";
import { ControlClient, ControlService, type GetValueResponse } from "../../src/proto/shoal/v1/control.js";
import { createSecureChannel, unaryCall } from "../../src/transport/client.js";
import { caPeerVerifier, type NodeRole } from "../../src/transport/identity.js";
import { RevocationState } from "../../src/transport/revocation.js";
import { createSecureServer } from "../../src/transport/server.js";
import { percentile } from "./lib/stats.js";

const durationArg = process.argv.indexOf("--duration-ms");
const durationMs = durationArg > 0 ? Number(process.argv[durationArg + 1]) : 3000;

async function nodeCert(root: RootCA, clusterId: string, role: NodeRole): Promise<{ certPem: string; keyPem: string }> {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const issued = root.issueNodeCertificate({ csrPem, nodeId: newId(), role, clusterId, clock: systemClock });
  return { certPem: issued.certPem, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

async function main(): Promise<void> {
  const clusterId = newId();
  const root = await createRootCA({ clock: systemClock });
  const serverId = await nodeCert(root, clusterId, "swarm-manager");
  const clientId = await nodeCert(root, clusterId, "swarm-manager");
  // A realistic list: revoked entries to look up on every call.
  const revocation = new RevocationState({ nodeIds: Array.from({ length: 1000 }, () => newId()), serials: [] });
  const server = createSecureServer({
    clusterId,
    rootCaPem: root.certPem,
    identity: serverId,
    verifier: caPeerVerifier({ rootCaPem: root.certPem, clusterId, clock: systemClock, revocation }),
    revocation,
  });
  server.addService(ControlService, {
    getValue: (call: grpc.ServerUnaryCall<{ key: string }, GetValueResponse>, cb: grpc.sendUnaryData<GetValueResponse>) => {
      server.peerOf(call);
      cb(null, { found: true, value: Buffer.from(call.request.key), index: 0n });
    },
  });
  const port = await server.listen("127.0.0.1:0");
  const channel = createSecureChannel(`127.0.0.1:${port}`, { rootCaPem: root.certPem, ...clientId, expectServerRole: "swarm-manager", clusterId });
  const client = channel.client(ControlClient);
  const shoalCall = (): Promise<GetValueResponse> => unaryCall<GetValueResponse>((cb) => client.getValue({ key: "k" }, cb));

  const plain = new grpc.Server();
  plain.addService(ControlService, {
    getValue: (call: grpc.ServerUnaryCall<{ key: string }, GetValueResponse>, cb: grpc.sendUnaryData<GetValueResponse>) =>
      cb(null, { found: true, value: Buffer.from(call.request.key), index: 0n }),
  });
  const plainCreds = grpc.ServerCredentials.createSsl(Buffer.from(root.certPem), [{ cert_chain: Buffer.from(serverId.certPem), private_key: Buffer.from(serverId.keyPem) }], true);
  const plainPort = await new Promise<number>((resolve, reject) => plain.bindAsync("127.0.0.1:0", plainCreds, (e, p) => (e ? reject(e) : resolve(p))));
  const plainClient = new ControlClient(
    `127.0.0.1:${plainPort}`,
    grpc.credentials.createSsl(Buffer.from(root.certPem), Buffer.from(clientId.keyPem), Buffer.from(clientId.certPem)),
    { "grpc.ssl_target_name_override": "swarm-manager" },
  );
  const plainCall = (): Promise<GetValueResponse> => unaryCall<GetValueResponse>((cb) => plainClient.getValue({ key: "k" }, cb));

  const results: Record<string, unknown> = {};
  for (const [name, call] of [["shoal", shoalCall], ["plainGrpcMtls", plainCall]] as const) {
    for (let i = 0; i < 200; i++) await call(); // warm up: handshake, caches, JIT
    results[name] = await measure(call);
  }
  channel.close();
  plainClient.close();
  plain.forceShutdown();
  await server.shutdown(500);
  console.log(JSON.stringify({ bench: "transport-unary", durationMsPerLevel: durationMs, node: process.version, ...results }));
}

async function measure(call: () => Promise<unknown>): Promise<Record<string, unknown>> {
  const results: Record<string, unknown> = {};
  for (const concurrency of [1, 64]) {
    const latenciesMs: number[] = [];
    const endAt = performance.now() + durationMs;
    const startedAt = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < endAt) {
          const t0 = performance.now();
          await call();
          latenciesMs.push(performance.now() - t0);
        }
      }),
    );
    const elapsedS = (performance.now() - startedAt) / 1000;
    latenciesMs.sort((a, b) => a - b);
    results[`c${concurrency}`] = {
      concurrency,
      calls: latenciesMs.length,
      callsPerSec: Math.round(latenciesMs.length / elapsedS),
      p50Ms: Number(percentile(latenciesMs, 50).toFixed(3)),
      p99Ms: Number(percentile(latenciesMs, 99).toFixed(3)),
    };
  }
  return results;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
