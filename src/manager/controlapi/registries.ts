// `shoal registry login|ls|logout`: registry logins kept in the cluster object (sealed at rest like
// every store value), one per registry address. Only managers hold them: the image resolver uses
// them, and a prefetch seed later gets a scoped token or, for a Basic-only registry, the
// credentials in memory for its job alone (DESIGN.md §3 rule 9). No read view carries a password.
import { X509Certificate } from "node:crypto";
import { ShoalError } from "../../base/errors.js";
import { RegistryClient, type RegistryAccess } from "../../oci/registry-client.js";
import { parseRegistryAddress } from "../../oci/reference.js";
import type { Cluster, RegistryAuth } from "../../proto/shoal/v1/objects.js";
import type {
  ListRegistriesResponse,
  RegistryLoginRequest,
  RegistryLoginResponse,
  RegistryLogoutRequest,
  RegistryLogoutResponse,
} from "../../proto/shoal/v1/control.js";
import { redactRegistryAuth } from "../../state/index.js";

/** Bounds that keep one login a small part of the cluster object. */
export const MAX_REGISTRY_USERNAME_CHARS = 256;
export const MAX_REGISTRY_PASSWORD_BYTES = 16 * 1024;
export const MAX_REGISTRY_CA_BYTES = 64 * 1024;
/** Registries one cluster may log in to. */
export const MAX_REGISTRIES = 64;

/** Checks that the login works (GET /v2/ with it); throws the registry client's error. */
export type RegistryLoginCheck = (registry: string, access: RegistryAccess) => Promise<void>;

export const pingRegistryLogin: RegistryLoginCheck = async (registry, access) => {
  await new RegistryClient({ access: (r) => (r === registry ? access : undefined), idleTimeoutMs: 10_000 }).ping(registry);
};

/** The access the managers' registry client uses for `registry` (undefined: anonymous). */
export function registryAccessOf(cluster: Cluster | undefined, registry: string): RegistryAccess | undefined {
  const auth = cluster?.registries.find((r) => r.registry === registry);
  if (auth === undefined) return undefined;
  return {
    ...(auth.caPem !== "" ? { ca: auth.caPem } : {}),
    ...(auth.username !== "" ? { credentials: { username: auth.username, password: Buffer.from(auth.password).toString("utf8") } } : {}),
  };
}

interface RegistryContext {
  cluster(): Cluster;
  updateCluster(mutate: (cluster: Cluster) => void): Promise<Cluster>;
  nowMs(): number;
  logger: { info(fields: object, msg: string): void };
  check: RegistryLoginCheck;
}

function checkLogin(req: RegistryLoginRequest): { registry: string; username: string; password: Buffer; caPem: string } {
  const registry = parseRegistryAddress(req.registry);
  const username = req.username;
  const password = Buffer.from(req.password);
  if (username.length > MAX_REGISTRY_USERNAME_CHARS) throw new ShoalError("INVALID_ARGUMENT", `the username is longer than ${MAX_REGISTRY_USERNAME_CHARS} characters`);
  // Basic auth joins them with ':' and the distribution spec has no escape for it.
  if (username.includes(":") || /[\u0000-\u001f]/.test(username)) throw new ShoalError("INVALID_ARGUMENT", "the username must not contain ':' or control characters");
  if (password.length > MAX_REGISTRY_PASSWORD_BYTES) throw new ShoalError("INVALID_ARGUMENT", `the password is longer than ${MAX_REGISTRY_PASSWORD_BYTES} bytes`);
  if ((username === "") !== (password.length === 0)) {
    throw new ShoalError("INVALID_ARGUMENT", username === "" ? "a password was given without a username (--username)" : "the password is empty: pipe it on stdin (--password-stdin) or type it at the prompt");
  }
  if (password.includes(0x0a) || password.includes(0x0d)) throw new ShoalError("INVALID_ARGUMENT", "the password must be one line");
  if (Buffer.byteLength(req.caPem) > MAX_REGISTRY_CA_BYTES) throw new ShoalError("INVALID_ARGUMENT", `the CA file is larger than ${MAX_REGISTRY_CA_BYTES} bytes`);
  if (req.caPem !== "") {
    try {
      new X509Certificate(req.caPem);
    } catch {
      throw new ShoalError("PEM_INVALID", "the registry CA file is not a PEM certificate");
    }
  }
  if (username === "" && req.caPem === "") throw new ShoalError("INVALID_ARGUMENT", "nothing to store: give a username (and password) or a CA file (--ca-file)");
  return { registry, username, password, caPem: req.caPem };
}

export function registryHandlers(ctx: RegistryContext) {
  return {
    registryLogin: async (req: RegistryLoginRequest): Promise<RegistryLoginResponse> => {
      const login = checkLogin(req);
      // As `docker login` does: a login the registry refuses is an error now, not at the first pull.
      await ctx.check(login.registry, {
        ...(login.caPem !== "" ? { ca: login.caPem } : {}),
        ...(login.username !== "" ? { credentials: { username: login.username, password: login.password.toString("utf8") } } : {}),
      });
      const stored: RegistryAuth = { registry: login.registry, username: login.username, password: login.password, caPem: login.caPem, updatedAt: new Date(ctx.nowMs()) };
      const cluster = await ctx.updateCluster((c) => {
        const others = c.registries.filter((r) => r.registry !== login.registry);
        if (others.length >= MAX_REGISTRIES) throw new ShoalError("FAILED_PRECONDITION", `the cluster already has ${MAX_REGISTRIES} registry logins; log out of one first`);
        c.registries = [...others, stored].sort((a, b) => a.registry.localeCompare(b.registry));
      });
      ctx.logger.info({ registry: login.registry, username: login.username }, "registry login stored");
      return { registry: redactRegistryAuth(cluster.registries.find((r) => r.registry === login.registry)!) };
    },

    listRegistries: async (): Promise<ListRegistriesResponse> => ({ registries: ctx.cluster().registries.map(redactRegistryAuth) }),

    registryLogout: async (req: RegistryLogoutRequest): Promise<RegistryLogoutResponse> => {
      const registry = parseRegistryAddress(req.registry);
      if (!ctx.cluster().registries.some((r) => r.registry === registry)) throw new ShoalError("NOT_FOUND", `there is no login for registry ${registry}`);
      await ctx.updateCluster((c) => {
        c.registries = c.registries.filter((r) => r.registry !== registry);
      });
      ctx.logger.info({ registry }, "registry login removed");
      return {};
    },
  };
}
