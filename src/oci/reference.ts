// Image references `HOST[:PORT]/NAME[:TAG][@sha256:HEX]` (the grammar of the OCI distribution
// spec). The registry host is required: nothing outside this network is reachable, so a Docker Hub
// default would only turn a typo into a confusing connection error.
import { ShoalError } from "../base/errors.js";
import { parseDigest } from "./digest.js";

export interface ImageReference {
  /** `host` or `host:port`, as written (lower case). */
  readonly registry: string;
  /** The repository path inside the registry, e.g. `team/app`. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

const MAX_REFERENCE_CHARS = 512;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST_LABEL = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;

function invalid(ref: string, why: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", `image reference '${ref}' is invalid: ${why}`);
}

/** Whether `host` (no port) looks like a registry host rather than the first path component. */
function isHostLike(first: string): boolean {
  return first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("[");
}

function checkRegistry(ref: string, registry: string): void {
  let host = registry;
  let port: string | undefined;
  if (registry.startsWith("[")) {
    const end = registry.indexOf("]");
    if (end < 0) throw invalid(ref, `registry '${registry}' has an unclosed IPv6 bracket`);
    host = registry.slice(1, end);
    const rest = registry.slice(end + 1);
    if (rest !== "" && !rest.startsWith(":")) throw invalid(ref, `registry '${registry}' is malformed`);
    port = rest === "" ? undefined : rest.slice(1);
    if (!/^[0-9a-fA-F:.]+$/.test(host)) throw invalid(ref, `registry '${registry}' is not an IPv6 address`);
  } else {
    const colon = registry.lastIndexOf(":");
    if (colon >= 0) {
      host = registry.slice(0, colon);
      port = registry.slice(colon + 1);
    }
    if (host === "" || !host.split(".").every((label) => HOST_LABEL.test(label))) {
      throw invalid(ref, `registry host '${host}' is not a host name or address`);
    }
  }
  if (port !== undefined && (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    throw invalid(ref, `registry port '${port}' is not a port number`);
  }
}

/**
 * A registry address as `registry login` takes it (`host[:port]`, the registry part of an image
 * reference), lower-cased the way parseImageReference spells it.
 */
export function parseRegistryAddress(addr: string): string {
  if (typeof addr !== "string" || addr === "") throw new ShoalError("INVALID_ARGUMENT", "the registry address is empty; give it as HOST[:PORT]");
  if (addr.length > 300 || /[\s/@]/.test(addr)) throw new ShoalError("INVALID_ARGUMENT", `registry address '${addr.slice(0, 64)}' must be HOST[:PORT], without a scheme or path`);
  const registry = addr.toLowerCase();
  try {
    checkRegistry(addr, registry);
  } catch (err) {
    throw new ShoalError("INVALID_ARGUMENT", `registry address '${addr}' is invalid: ${(err as Error).message.replace(/^image reference '[^']*' is invalid: /, "")}`);
  }
  return registry;
}

export function parseImageReference(ref: string): ImageReference {
  if (typeof ref !== "string" || ref === "") throw new ShoalError("INVALID_ARGUMENT", "image reference is empty");
  if (ref.length > MAX_REFERENCE_CHARS) throw invalid(ref.slice(0, 64) + "…", `longer than ${MAX_REFERENCE_CHARS} characters`);
  if (/\s/.test(ref)) throw invalid(ref, "it contains white space");

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1));
    } catch (err) {
      throw invalid(ref, (err as Error).message);
    }
    rest = rest.slice(0, at);
  }

  const slash = rest.indexOf("/");
  const first = slash < 0 ? rest : rest.slice(0, slash);
  if (slash < 0 || !isHostLike(first)) {
    throw invalid(ref, "it names no registry host; write it as HOST[:PORT]/NAME[:TAG] (e.g. 127.0.0.1:5000/app:1), there is no default registry");
  }
  const registry = first.toLowerCase();
  checkRegistry(ref, registry);
  let path = rest.slice(slash + 1);

  let tag: string | undefined;
  const lastColon = path.lastIndexOf(":");
  if (lastColon >= 0) {
    tag = path.slice(lastColon + 1);
    path = path.slice(0, lastColon);
    if (!TAG.test(tag)) throw invalid(ref, `tag '${tag}' must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'`);
  }
  if (path === "") throw invalid(ref, "the repository name is empty");
  for (const component of path.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(ref, `repository component '${component}' must be lower-case letters and digits separated by '.', '_', '__' or '-'`);
    }
  }
  if (path.length > 255) throw invalid(ref, "the repository name is longer than 255 characters");
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository: path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** The reference a manifest is fetched by: the digest when there is one, else the tag. */
export function manifestReferenceOf(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}
