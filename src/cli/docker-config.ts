// `--with-registry-auth`: the operator's login for a registry, read from their Docker config as
// `docker` reads it ($DOCKER_CONFIG/config.json, else ~/.docker/config.json): `auths[HOST[:PORT]]`
// with `auth` = base64 of "user:password", or `username` and `password`. Credential helpers
// (`credsStore`, `credHelpers`) are not run: a registry whose login lives only there is refused
// with a sentence that says so. Nothing here ever puts the password, the auth string or the file's
// text into an error (a JSON parse error would quote the text, so it is not passed on).
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { ShoalError } from "../base/errors.js";
import { escapeUnsafeChars as shown } from "../base/text.js";

/** A config larger than this is not a Docker config. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface DockerLogin {
  registry: string;
  username: string;
  /** The caller zeroes it once sent. */
  password: Buffer;
}

/** `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`. */
export function dockerConfigPath(env: Record<string, string | undefined>): string {
  const dir = env.DOCKER_CONFIG !== undefined && env.DOCKER_CONFIG !== "" ? env.DOCKER_CONFIG : join(env.HOME || homedir(), ".docker");
  return join(dir, "config.json");
}

/** An `auths` key as Docker matches it: without a scheme or path, lower case ("https://h:5000/v1/" → "h:5000"). */
export function authsKeyHost(key: string): string {
  const bare = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  return bare.split("/")[0]!.toLowerCase();
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function useShoalLogin(registry: string): string {
  return `or store the login with \`shoal registry login ${registry} --username USER --password-stdin\``;
}

/** The entry of `auths` for `registry`: an exact key first, then one that names the same host. */
function findEntry(auths: Json, registry: string): Json | undefined {
  const exact = auths[registry];
  if (isObject(exact)) return exact;
  for (const [key, value] of Object.entries(auths)) if (authsKeyHost(key) === registry && isObject(value)) return value;
  return undefined;
}

function decodeAuth(auth: string, registry: string, path: string): { username: string; password: Buffer } {
  const bad = new ShoalError("INVALID_ARGUMENT", `the "auth" of ${registry} in ${path} is not base64 of USER:PASSWORD: run \`docker login ${registry}\` again, ${useShoalLogin(registry)}`);
  if (!/^[A-Za-z0-9+/=\s]*$/.test(auth)) throw bad;
  const decoded = Buffer.from(auth, "base64");
  try {
    const colon = decoded.indexOf(0x3a);
    if (colon <= 0 || colon === decoded.length - 1) throw bad;
    const username = decoded.subarray(0, colon).toString("utf8");
    return { username, password: Buffer.from(decoded.subarray(colon + 1)) };
  } finally {
    decoded.fill(0);
  }
}

/**
 * The login for `registry` (`HOST[:PORT]`, lower case, as parseRegistryAddress spells it) from the
 * Docker config that `env` points at. Errors: NOT_FOUND (no config file, or no entry for the
 * registry), FAILED_PRECONDITION (the login is kept by a credential helper, or is an identity token),
 * INVALID_ARGUMENT (the file is not a Docker config, or the entry is malformed).
 */
export async function dockerConfigLogin(env: Record<string, string | undefined>, registry: string): Promise<DockerLogin> {
  const path = shown(dockerConfigPath(env));
  let text: string;
  try {
    const bytes = await readFile(dockerConfigPath(env));
    if (bytes.length > MAX_CONFIG_BYTES) throw new ShoalError("INVALID_ARGUMENT", `${path} is larger than ${MAX_CONFIG_BYTES} bytes: it is not a Docker config`);
    text = bytes.toString("utf8");
    bytes.fill(0);
  } catch (err) {
    if (err instanceof ShoalError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new ShoalError("NOT_FOUND", `--with-registry-auth: there is no Docker config at ${path}: run \`docker login ${registry}\` first (or set DOCKER_CONFIG), ${useShoalLogin(registry)}`);
    }
    throw new ShoalError("INVALID_ARGUMENT", `--with-registry-auth: cannot read the Docker config ${path}: ${code ?? "unreadable"}`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch {
    throw new ShoalError("INVALID_ARGUMENT", `--with-registry-auth: ${path} is not valid JSON, so it is not a Docker config`);
  }
  if (!isObject(config)) throw new ShoalError("INVALID_ARGUMENT", `--with-registry-auth: ${path} is not a Docker config (not a JSON object)`);
  const auths = isObject(config.auths) ? config.auths : {};
  const helpers = isObject(config.credHelpers) ? config.credHelpers : {};
  const helperKey = Object.keys(helpers).find((key) => key === registry || authsKeyHost(key) === registry);
  const helper = helperKey !== undefined ? helpers[helperKey] : undefined;
  const store = typeof config.credsStore === "string" && config.credsStore !== "" ? config.credsStore : undefined;
  const refuseHelper = (name: unknown): ShoalError =>
    new ShoalError(
      "FAILED_PRECONDITION",
      `--with-registry-auth: ${path} keeps the login for ${registry} in a credential helper (docker-credential-${shown(String(name))}), which shoal does not run; ${useShoalLogin(registry)}`,
    );
  // As docker: a helper named for this registry wins over everything in the file.
  if (helper !== undefined) throw refuseHelper(helper);

  const entry = findEntry(auths, registry);
  if (entry !== undefined) {
    if (typeof entry.auth === "string" && entry.auth !== "") {
      const login = decodeAuth(entry.auth, registry, path);
      return { registry, ...login };
    }
    if (typeof entry.username === "string" && entry.username !== "" && typeof entry.password === "string" && entry.password !== "") {
      return { registry, username: entry.username, password: Buffer.from(entry.password, "utf8") };
    }
    if (typeof entry.identitytoken === "string" && entry.identitytoken !== "") {
      throw new ShoalError("FAILED_PRECONDITION", `--with-registry-auth: the login for ${registry} in ${path} is an identity token, which shoal cannot use; ${useShoalLogin(registry)}`);
    }
  }
  // `docker login` with a credsStore leaves an empty entry in auths and the secret in the helper.
  if (store !== undefined) throw refuseHelper(store);
  throw new ShoalError("NOT_FOUND", `--with-registry-auth: ${path} has no login for registry ${registry}: run \`docker login ${registry}\` first, ${useShoalLogin(registry)}`);
}
