// Registry authentication as the distribution spec's token flow describes it: parse a 401's
// `WWW-Authenticate` challenge, and turn it into an Authorization header — Basic from the
// credentials, or Bearer from a token server (realm, service, scope), which is asked with the
// credentials as Basic (or anonymously when there are none). Credentials never enter a message.
import { ShoalError } from "../base/errors.js";
import { checkTransport, readBody, sendRequest } from "./http.js";

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface AuthChallenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;

/**
 * Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. Only the first challenge
 * is read (registries send one).
 */
export function parseChallenge(header: string | undefined): AuthChallenge | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (m === null) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== "basic" && scheme !== "bearer") return undefined;
  const params: Record<string, string> = {};
  const pair = /\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,|$)/gy;
  const rest = m[2]!;
  let p: RegExpExecArray | null;
  while (pair.lastIndex < rest.length && (p = pair.exec(rest)) !== null) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
  }
  return { scheme, params };
}

export function basicAuthorization(credentials: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, "utf8").toString("base64")}`;
}

export interface TokenRequest {
  challenge: AuthChallenge;
  /** Used when the challenge names no scope. */
  defaultScope: string;
  credentials?: RegistryCredentials;
  ca?: string | Buffer;
  idleTimeoutMs: number;
  /** `registry HOST` for messages. */
  peer: string;
}

/** Asks the challenge's token server for a token; returns the `Bearer …` header value. */
export async function fetchBearerToken(req: TokenRequest): Promise<string> {
  const realm = req.challenge.params["realm"];
  if (realm === undefined || realm === "") throw new ShoalError("UNAUTHENTICATED", `${req.peer} asked for a Bearer token but named no realm`);
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new ShoalError("UNAUTHENTICATED", `${req.peer} named a token realm that is not a URL`);
  }
  const tokenPeer = `token server ${url.host} of ${req.peer}`;
  // Credentials go to the realm as Basic: never over plain HTTP off this machine.
  checkTransport(url, tokenPeer);
  const service = req.challenge.params["service"];
  if (service !== undefined) url.searchParams.set("service", service);
  for (const scope of (req.challenge.params["scope"] ?? req.defaultScope).split(" ").filter((s) => s !== "")) url.searchParams.append("scope", scope);
  const headers: Record<string, string> = { accept: "application/json" };
  if (req.credentials !== undefined) {
    headers["authorization"] = basicAuthorization(req.credentials);
    url.searchParams.set("account", req.credentials.username);
  }
  const res = await sendRequest({ method: "GET", url, headers, idleTimeoutMs: req.idleTimeoutMs, peer: tokenPeer, ...(req.ca !== undefined ? { ca: req.ca } : {}) });
  if (res.status === 401 || res.status === 403) {
    res.body.resume();
    throw new ShoalError(
      "UNAUTHENTICATED",
      req.credentials === undefined
        ? `${tokenPeer} refused an anonymous token; log in to the registry first (shoal registry login)`
        : `${tokenPeer} refused the credentials of user '${req.credentials.username}'`,
    );
  }
  if (res.status >= 500 || res.status === 429) {
    res.body.resume();
    throw new ShoalError("REGISTRY_UNAVAILABLE", `${tokenPeer} answered HTTP ${res.status}`);
  }
  if (res.status !== 200) {
    res.body.resume();
    throw new ShoalError("UNAUTHENTICATED", `${tokenPeer} answered HTTP ${res.status} to a token request`);
  }
  const body = await readBody(res, MAX_TOKEN_RESPONSE_BYTES, `the answer of ${tokenPeer}`);
  let token: unknown;
  try {
    const doc = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    token = doc["token"] ?? doc["access_token"];
  } catch {
    throw new ShoalError("UNAUTHENTICATED", `${tokenPeer} answered with something that is not JSON`);
  }
  if (typeof token !== "string" || token === "" || /[\s]/.test(token)) throw new ShoalError("UNAUTHENTICATED", `${tokenPeer} answered without a token`);
  return `Bearer ${token}`;
}
