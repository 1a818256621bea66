// The HTTP listener of `--metrics-addr`: `GET /metrics` answers a scrape of one registry in the
// Prometheus text format; every other path or method is 404. No request body is read.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ShoalError } from "../../base/errors.js";
import type { MetricsAddr } from "./metrics-addr.js";

export interface Scrape {
  contentType: string;
  /** The text of one scrape. */
  text(): Promise<string>;
}

export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(addr: MetricsAddr, scrape: Scrape, onError: (err: Error) => void): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "").split("?")[0];
      if (req.method !== "GET" || path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("404 not found: the metrics are at GET /metrics\n");
        return;
      }
      scrape.text().then(
        (text) => res.writeHead(200, { "content-type": scrape.contentType, "cache-control": "no-store" }).end(text),
        (err: unknown) => {
          onError(err instanceof Error ? err : new Error(String(err)));
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("the scrape failed; see the daemon's log\n");
        },
      );
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(new ShoalError("UNAVAILABLE", `cannot listen for metrics on ${addr.host}:${addr.port}: ${err.code ?? err.message}; choose another --metrics-addr`)),
      );
      server.listen({ host: addr.host, port: addr.port }, () => resolve());
    });
    server.on("error", (err) => onError(err));
    return new MetricsServer(server, (server.address() as AddressInfo).port);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
