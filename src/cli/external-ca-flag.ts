// The `--external-ca protocol=cfssl,url=https://...[,cacert=FILE]` flag, as `docker swarm init` and
// `docker swarm ca` take it, shared by `shoal init` and `shoal ca`; and reading a PEM file a flag names.
import { readFile } from "node:fs/promises";
import { ShoalError } from "../base/errors.js";
import type { ExternalCA } from "../proto/shoal/v1/objects.js";

export async function readPem(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ShoalError("INVALID_ARGUMENT", `cannot read ${flag} ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** `protocol=cfssl,url=https://...[,cacert=FILE]`, as `docker swarm ca --external-ca` takes it. */
export function parseExternalCaSpec(spec: string): { protocol: string; url: string; cacertFile?: string } {
  const fields = new Map<string, string>();
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part.trim() : part.slice(0, eq).trim().toLowerCase();
    if (eq < 0 || !["protocol", "url", "cacert"].includes(key)) {
      throw new ShoalError("INVALID_ARGUMENT", `--external-ca takes protocol=cfssl,url=https://HOST:PORT[,cacert=FILE]; "${part.slice(0, 40)}" is not one of those`);
    }
    if (fields.has(key)) throw new ShoalError("INVALID_ARGUMENT", `--external-ca gives ${key}= twice`);
    fields.set(key, part.slice(eq + 1).trim());
  }
  const protocol = fields.get("protocol") ?? "cfssl";
  const url = fields.get("url");
  if (url === undefined || url === "") throw new ShoalError("INVALID_ARGUMENT", "--external-ca needs url=https://HOST:PORT (the CFSSL signer)");
  const cacertFile = fields.get("cacert");
  return cacertFile === undefined || cacertFile === "" ? { protocol, url } : { protocol, url, cacertFile };
}

/** The flag's value as the daemon takes it, with the cacert= file read. */
export async function externalCaFromSpec(spec: string): Promise<ExternalCA> {
  const parsed = parseExternalCaSpec(spec);
  return { protocol: parsed.protocol, url: parsed.url, caCertPem: parsed.cacertFile === undefined ? Buffer.alloc(0) : await readPem(parsed.cacertFile, "cacert=") };
}
