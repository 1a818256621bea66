// A TCP relay in front of a local registry that counts the bytes the registry sends and can hold
// them to a rate: how the P2P tests and benchmarks measure registry egress, and how they make the
// registry the bottleneck it is in a real cluster. TLS passes through unchanged (the registry's
// certificate names 127.0.0.1, whatever the port).
import { connect, createServer, type Socket } from "node:net";

export interface CountingRelay {
  /** `127.0.0.1:PORT`: use it as the registry part of image references. */
  readonly host: string;
  /** Bytes the registry sent through the relay so far. */
  sent(): number;
  close(): Promise<void>;
}

/** `bytesPerSec` 0: no limit. The limit is shared by all connections, as a registry's uplink is. */
export async function startCountingRelay(upstreamPort: number, opts: { bytesPerSec?: number } = {}): Promise<CountingRelay> {
  const rate = opts.bytesPerSec ?? 0;
  let sent = 0;
  const startedAt = Date.now();
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    upstream.on("data", (chunk: Buffer) => {
      sent += chunk.length;
      if (rate > 0) {
        // Ahead of the budget: hold this connection until the budget catches up.
        const aheadMs = (sent / rate) * 1000 - (Date.now() - startedAt);
        if (aheadMs > 5) {
          upstream.pause();
          setTimeout(() => upstream.resume(), aheadMs);
        }
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    sent: () => sent,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
