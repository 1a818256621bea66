// One HTTP(S) request to a registry or a token server, with the transport rules Shoal holds to:
// HTTPS (system CAs plus an optional CA file), plain HTTP only to a loopback address, a bounded
// idle time, and network failures turned into REGISTRY_UNAVAILABLE.
//
// node:http/https rather than the global fetch: Node 20's fetch takes a custom CA only through
// undici's Agent, which Node does not expose (it would be a new dependency), and node:https also
// gives a per-socket idle timeout and a body stream without buffering.
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { ShoalError } from "../base/errors.js";

export interface HttpRequest {
  method: "GET" | "HEAD";
  url: URL;
  headers: Record<string, string>;
  /** PEM CA bundle trusted in addition to the system's. */
  ca?: string | Buffer;
  /** The request fails when the socket is idle this long (connect, headers, or body). */
  idleTimeoutMs: number;
  /** Names the remote end in error messages (`registry 127.0.0.1:5000`). */
  peer: string;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/** Throws unless `url` is HTTPS, or HTTP to a loopback address. */
export function checkTransport(url: URL, peer: string): void {
  if (url.protocol === "https:") return;
  if (url.protocol === "http:" && isLoopbackHost(url.hostname)) return;
  if (url.protocol === "http:") {
    throw new ShoalError(
      "INVALID_ARGUMENT",
      `refusing plain HTTP to ${peer} (${url.host}): only a loopback registry may be used without TLS; serve it over HTTPS and give its CA file`,
    );
  }
  throw new ShoalError("INVALID_ARGUMENT", `${peer}: unsupported URL scheme '${url.protocol}'`);
}

export function sendRequest(req: HttpRequest): Promise<HttpResponse> {
  checkTransport(req.url, req.peer);
  const transport = req.url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = { method: req.method, headers: req.headers };
    if (req.ca !== undefined) options.ca = req.ca;
    let response: IncomingMessage | undefined;
    const outgoing = transport.request(req.url, options, (res) => {
      response = res;
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    // One socket idle timer covers connect, waiting for headers, and every gap in the body.
    outgoing.setTimeout(req.idleTimeoutMs, () => {
      if (response === undefined) outgoing.destroy(unavailable(req, `did not answer within ${req.idleTimeoutMs} ms`));
      else if (!response.complete) response.destroy(unavailable(req, `stopped sending for ${req.idleTimeoutMs} ms`));
    });
    outgoing.on("error", (err: NodeJS.ErrnoException) => reject(err instanceof ShoalError ? err : unavailable(req, describeNetworkError(err))));
    outgoing.end();
  });
}

function unavailable(req: HttpRequest, why: string): ShoalError {
  return new ShoalError("REGISTRY_UNAVAILABLE", `${req.peer} (${req.url.host}) is unavailable: ${why}`);
}

function describeNetworkError(err: NodeJS.ErrnoException): string {
  const code = err.code ?? "";
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "its host name does not resolve";
  if (code === "ECONNRESET") return "the connection was reset";
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return "no route to it";
  if (code.startsWith("ERR_TLS") || code.includes("CERT") || code === "DEPTH_ZERO_SELF_SIGNED_CERT") return `TLS failed (${code}); give the registry's CA file`;
  return code !== "" ? code : err.message;
}

/** Reads a whole (small) body, failing once it passes `maxBytes`. */
export async function readBody(res: HttpResponse, maxBytes: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers["content-length"] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    res.body.destroy();
    throw new ShoalError("INVALID_ARGUMENT", `${what} is ${declared} bytes, more than the ${maxBytes} allowed`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) {
      res.body.destroy();
      throw new ShoalError("INVALID_ARGUMENT", `${what} is more than the ${maxBytes} bytes allowed`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Consumes and drops a body so the connection can be reused. */
export function discardBody(res: HttpResponse): void {
  res.body.resume();
  res.body.on("error", () => {});
}
