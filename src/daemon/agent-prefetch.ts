// The agent's side of P2P prefetch, wired (DESIGN.md §8): the PrefetchRunner the agent hands its
// orders to, writing into the node's piece store, and the PeerClient it downloads with — this
// node's certificate (replaced on renewal), the revocation list the managers push to the agent
// (a revoked peer is neither asked nor trusted as a server), and `--p2p-download-rate`. A peer
// that is a manager serves on the manager's listener with a manager certificate, so the client
// expects that role for the addresses the session lists as managers. One per agent; closed with it.
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import type { Random } from "../base/random.js";
import type { Agent } from "../agent/agent.js";
import type { NodeImages } from "../agent/images/node-images.js";
import { PeerClient } from "../agent/p2p/peer-client.js";
import { PrefetchRunner, type PrefetchReport } from "../agent/prefetch-runner.js";

export interface AgentPrefetchOptions {
  agent: Agent;
  images: NodeImages;
  clusterId: string;
  rootCaPem: string;
  identity: { certPem: string; keyPem: string };
  /** Bytes per second over all downloads from peers; 0 is unlimited. */
  downloadBytesPerSec: number;
  /** A job ended on this node (done or failed): the content store's GC may have blobs to free. */
  onJobEnded?: () => void;
  /** Sees every report the runner makes, after the agent was given it (the daemon's metrics). */
  onReport?: (event: PrefetchReport) => void;
  clock: Clock;
  random: Random;
  logger: Logger;
}

export class AgentPrefetch {
  readonly client: PeerClient;
  readonly runner: PrefetchRunner;

  constructor(private readonly opts: AgentPrefetchOptions) {
    const { agent } = opts;
    this.client = new PeerClient({
      clusterId: opts.clusterId,
      rootCaPem: opts.rootCaPem,
      identity: opts.identity,
      revocation: agent.revocation,
      clock: opts.clock,
      downloadBytesPerSec: opts.downloadBytesPerSec,
      roleOf: (addr) => (agent.lastSession?.managers.some((m) => m.addr === addr) === true ? "swarm-manager" : "swarm-worker"),
    });
    this.runner = new PrefetchRunner({
      sink: opts.images.sink,
      storeManifest: opts.images.storeManifest,
      peer: this.client,
      clock: opts.clock,
      random: opts.random,
      logger: opts.logger.child({ component: "prefetch" }),
      report: (event) => {
        agent.reportPrefetch(event);
        opts.onReport?.(event);
        if (event.kind === "done" || event.kind === "failed") opts.onJobEnded?.();
      },
      isRevoked: (nodeId) => agent.revocation.isNodeRevoked(nodeId),
    });
  }

  /** Whether the current session says the leader plans prefetch jobs (tasks then wait for theirs). */
  get planned(): boolean {
    return this.opts.agent.lastSession?.prefetch === true;
  }

  updateIdentity(certPem: string, keyPem: string): void {
    this.client.updateIdentity(certPem, keyPem);
  }

  /** After a root CA rotation: the peers' certificates are checked against these roots from now on. */
  updateTrust(rootCaPem: string): void {
    this.client.updateTrust(rootCaPem);
  }

  async close(): Promise<void> {
    await this.runner.close();
    this.client.close();
  }
}
