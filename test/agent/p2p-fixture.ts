// One P2P node for tests: a worker certificate of the given zone from a real RootCA, a content
// store and piece store in a temp dir, a PeerServer on a real mutual-TLS listener on 127.0.0.1
// ("open" kind, as a worker's), and a PeerClient with the same identity.
import { X509Certificate, type KeyObject } from "node:crypto";
import { join } from "node:path";
import type { Logger } from "pino";
import { systemClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, RootCA } from "../../src/ca/index.js";
import { ContentStore } from "../../src/agent/images/content-store.js";
import { PieceStore } from "../../src/agent/images/piece-store.js";
import { PeerClient } from "../../src/agent/p2p/peer-client.js";
import { PeerServer, type PeerServerOptions } from "../../src/agent/p2p/peer-server.js";
import { caPeerVerifier } from "../../src/transport/identity.js";
import { RevocationState } from "../../src/transport/revocation.js";
import { createSecureServer, type SecureServer } from "../../src/transport/server.js";

export interface PeerNode {
  nodeId: string;
  zone: string;
  addr: string;
  serial: string;
  store: ContentStore;
  pieces: PieceStore;
  server: SecureServer;
  peer: PeerServer;
  client: PeerClient;
  /** This node's view of the revocation list (its server's and its client's). */
  revocation: RevocationState;
}

export async function startPeerNode(opts: {
  root: RootCA;
  clusterId: string;
  zone: string;
  /** The node's directory (its content store goes in DIR/content). */
  dir: string;
  logger: Logger;
  pieceSize: number;
  server?: Partial<PeerServerOptions>;
}): Promise<PeerNode> {
  const { root, clusterId, zone } = opts;
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const nodeId = newId();
  const issued = root.issueNodeCertificate({ csrPem, nodeId, clusterId, role: "swarm-worker", zone, clock: systemClock });
  const keyPem = (privateKey as KeyObject).export({ type: "pkcs8", format: "pem" }).toString();
  const revocation = new RevocationState();
  const store = new ContentStore(join(opts.dir, "content"));
  await store.open();
  const pieces = new PieceStore(store, { defaultPieceSize: opts.pieceSize });
  const server = createSecureServer({
    clusterId,
    rootCaPem: root.certPem,
    identity: { certPem: issued.certPem, keyPem },
    verifier: caPeerVerifier({ rootCaPem: root.certPem, clusterId, clock: systemClock, revocation }),
    revocation,
    clock: systemClock,
  });
  const peer = new PeerServer({ clusterId, zone, rootCA: RootCA.fromCertOnly(root.certPem), source: pieces, peerOf: (call) => server.peerOf(call), revocation, clock: systemClock, logger: opts.logger, ...opts.server });
  peer.mount(server);
  const port = await server.listen("127.0.0.1:0", "open");
  const client = new PeerClient({ clusterId, rootCaPem: root.certPem, identity: { certPem: issued.certPem, keyPem }, revocation, clock: systemClock });
  const serial = new X509Certificate(issued.certPem).serialNumber;
  return { nodeId, zone, addr: `127.0.0.1:${port}`, serial, store, pieces, server, peer, client, revocation };
}
