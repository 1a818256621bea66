// Join tokens (DESIGN.md §2): SWMTKN-1-<CA digest>-<secret>. The digest lets a joiner pin the root CA
// it fetched without TLS; the secret authorizes the join and decides the role. Error messages never
// repeat any part of a presented token.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";
import { bytesToBase36 } from "../base/ids.js";
import type { NodeRole } from "./node-identity.js";
import type { JoinTokens } from "../proto/shoal/v1/objects.js";
import { caDigestOf, CA_DIGEST_LENGTH, type RootCA } from "./root-ca.js";

export const JOIN_TOKEN_PREFIX = "SWMTKN";
export const JOIN_TOKEN_VERSION = 1;
export const JOIN_TOKEN_SECRET_LENGTH = 25;
const JOIN_TOKEN_SECRET_BYTES = 16;
/** SWMTKN-1-<50>-<25> */
export const JOIN_TOKEN_LENGTH = `${JOIN_TOKEN_PREFIX}-1-`.length + CA_DIGEST_LENGTH + 1 + JOIN_TOKEN_SECRET_LENGTH;
const TOKEN_PATTERN = /^SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})$/;
const VERSION_PATTERN = /^SWMTKN-([0-9]{1,9})(?:-|$)/;

export interface ParsedJoinToken {
  version: 1;
  /** Base-36 SHA-256 of the root CA PEM bundle. */
  caDigest: string;
  /** Base-36 secret; never log or print it. */
  secret: string;
}

const HINT = "copy the whole token printed by `shoal join-token worker|manager` on a manager";

/** Splits and checks a join token; TOKEN_MALFORMED or TOKEN_VERSION otherwise. Never echoes the input. */
export function parseJoinToken(token: unknown): ParsedJoinToken {
  if (typeof token !== "string" || token.length === 0) {
    throw new ShoalError("TOKEN_MALFORMED", `the join token is empty; ${HINT}`);
  }
  // Checked before anything else so a huge input costs nothing more than this comparison.
  if (token.length > JOIN_TOKEN_LENGTH) {
    const version = VERSION_PATTERN.exec(token.slice(0, 20));
    if (version && Number(version[1]) !== JOIN_TOKEN_VERSION) throw versionError(version[1]!);
    throw new ShoalError("TOKEN_MALFORMED", `the join token is longer than ${JOIN_TOKEN_LENGTH} characters; ${HINT}`);
  }
  const match = TOKEN_PATTERN.exec(token);
  if (match) return { version: 1, caDigest: match[1]!, secret: match[2]! };
  const version = VERSION_PATTERN.exec(token);
  if (version && Number(version[1]) !== JOIN_TOKEN_VERSION) throw versionError(version[1]!);
  if (!token.startsWith(`${JOIN_TOKEN_PREFIX}-`)) {
    throw new ShoalError("TOKEN_MALFORMED", `the join token does not start with "SWMTKN-"; ${HINT}`);
  }
  if (token.length < JOIN_TOKEN_LENGTH) {
    throw new ShoalError("TOKEN_MALFORMED", `the join token is shorter than ${JOIN_TOKEN_LENGTH} characters (truncated?); ${HINT}`);
  }
  throw new ShoalError(
    "TOKEN_MALFORMED",
    `the join token is not SWMTKN-1-<50 characters [0-9a-z]>-<25 characters [0-9a-z]>; ${HINT}`,
  );
}

function versionError(version: string): ShoalError {
  const shown = version.length <= 4 ? version : "?";
  return new ShoalError("TOKEN_VERSION", `join token version ${shown} is not supported (this node understands version 1); use a node of the same Shoal version`);
}

/** A new token for this root CA with 16 CSPRNG bytes of secret. */
export function generateJoinToken(rootCA: RootCA): string {
  return formatJoinToken(rootCA.digest(), bytesToBase36(randomBytes(JOIN_TOKEN_SECRET_BYTES), JOIN_TOKEN_SECRET_LENGTH));
}

function formatJoinToken(caDigest: string, secret: string): string {
  return `${JOIN_TOKEN_PREFIX}-${JOIN_TOKEN_VERSION}-${caDigest}-${secret}`;
}

function equalConstantTime(a: string, b: string): boolean {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  // Lengths are public (fixed by the format); only the contents need constant-time comparison.
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * Checks that the root CA bundle a joiner fetched (exact bytes as received) is the one the token
 * names; TOKEN_DIGEST_MISMATCH otherwise.
 */
export function verifyTokenDigest(token: string | ParsedJoinToken, caPem: string | Uint8Array): void {
  const parsed = typeof token === "string" ? parseJoinToken(token) : token;
  if (!equalConstantTime(parsed.caDigest, caDigestOf(caPem))) {
    throw new ShoalError(
      "TOKEN_DIGEST_MISMATCH",
      "the token belongs to another cluster's CA: the root CA served by this manager does not match the token's digest; check the manager address and the token",
    );
  }
}

interface RoleToken {
  secret: string;
  expiresAtMs: number | undefined;
  /** The secret this one replaced, kept to tell "rotated" from "unknown". */
  previousSecret: string | undefined;
  /** The root digest of the replaced token: another root's after a root CA rotation. */
  previousDigest?: string;
}

const ROLES: readonly NodeRole[] = ["swarm-worker", "swarm-manager"];

/**
 * The worker and manager tokens a manager accepts, with optional expiries. The secret each token
 * replaced is persisted too (proto JoinTokens previous_*), so TOKEN_ROTATED survives a restart.
 */
export class JoinTokenSet {
  private readonly tokens: Map<NodeRole, RoleToken>;

  private constructor(
    private readonly caDigest: string,
    tokens: Map<NodeRole, RoleToken>,
  ) {
    this.tokens = tokens;
  }

  /**
   * After a root CA rotation: fresh tokens for both roles pinning `newRoot`; the current ones are
   * kept as the replaced tokens (TOKEN_ROTATED). Expiries are not carried over.
   */
  forNewRoot(newRoot: RootCA): JoinTokenSet {
    const tokens = new Map<NodeRole, RoleToken>();
    for (const role of ROLES) {
      tokens.set(role, {
        secret: parseJoinToken(generateJoinToken(newRoot)).secret,
        expiresAtMs: undefined,
        previousSecret: this.roleToken(role).secret,
        previousDigest: this.caDigest,
      });
    }
    return new JoinTokenSet(newRoot.digest(), tokens);
  }

  /** Fresh tokens for both roles, without expiry. */
  static generate(rootCA: RootCA): JoinTokenSet {
    const tokens = new Map<NodeRole, RoleToken>();
    for (const role of ROLES) tokens.set(role, { secret: parseJoinToken(generateJoinToken(rootCA)).secret, expiresAtMs: undefined, previousSecret: undefined });
    return new JoinTokenSet(rootCA.digest(), tokens);
  }

  /** Restores the set from the replicated cluster object; the tokens must belong to this root CA. */
  static fromProto(proto: JoinTokens, rootCA: RootCA): JoinTokenSet {
    const tokens = new Map<NodeRole, RoleToken>();
    for (const role of ROLES) {
      const text = role === "swarm-worker" ? proto.worker : proto.manager;
      const expiresAt = role === "swarm-worker" ? proto.workerExpiresAt : proto.managerExpiresAt;
      const parsed = parseJoinToken(text);
      verifyTokenDigest(parsed, rootCA.certPem);
      const previousText = role === "swarm-worker" ? proto.previousWorker : proto.previousManager;
      let previousSecret: string | undefined;
      let previousDigest: string | undefined;
      if (previousText !== undefined && previousText !== "") {
        // A root CA rotation replaces the tokens with ones pinning the new root; the ones it replaced
        // keep the old root's digest so that they are refused as rotated, not as another cluster's.
        const previous = parseJoinToken(previousText);
        previousSecret = previous.secret;
        previousDigest = previous.caDigest;
      }
      tokens.set(role, { secret: parsed.secret, expiresAtMs: expiresAt?.getTime(), previousSecret, ...(previousDigest !== undefined ? { previousDigest } : {}) });
    }
    return new JoinTokenSet(rootCA.digest(), tokens);
  }

  toProto(): JoinTokens {
    const expiry = (role: NodeRole): Date | undefined => {
      const ms = this.roleToken(role).expiresAtMs;
      return ms === undefined ? undefined : new Date(ms);
    };
    return {
      worker: this.token("swarm-worker"),
      manager: this.token("swarm-manager"),
      workerExpiresAt: expiry("swarm-worker"),
      managerExpiresAt: expiry("swarm-manager"),
      previousWorker: this.previousToken("swarm-worker"),
      previousManager: this.previousToken("swarm-manager"),
    };
  }

  private previousToken(role: NodeRole): string {
    const entry = this.roleToken(role);
    return entry.previousSecret === undefined ? "" : formatJoinToken(entry.previousDigest ?? this.caDigest, entry.previousSecret);
  }

  private roleToken(role: NodeRole): RoleToken {
    const entry = this.tokens.get(role);
    if (!entry) throw new ShoalError("INVALID_ARGUMENT", 'role must be "swarm-manager" or "swarm-worker"');
    return entry;
  }

  /** The full current token of a role (a secret: show it only to an operator who asked for it). */
  token(role: NodeRole): string {
    return formatJoinToken(this.caDigest, this.roleToken(role).secret);
  }

  expiresAt(role: NodeRole): Date | undefined {
    const ms = this.roleToken(role).expiresAtMs;
    return ms === undefined ? undefined : new Date(ms);
  }

  /** Replaces a role's token; the old one is refused from now on. Returns the new token. */
  rotate(role: NodeRole, options: { expiresAt?: Date } = {}): string {
    const current = this.roleToken(role);
    const expiresAtMs = options.expiresAt?.getTime();
    if (expiresAtMs !== undefined && !Number.isFinite(expiresAtMs)) throw new ShoalError("INVALID_ARGUMENT", "expiresAt must be a valid date");
    const secret = bytesToBase36(randomBytes(JOIN_TOKEN_SECRET_BYTES), JOIN_TOKEN_SECRET_LENGTH);
    this.tokens.set(role, { secret, expiresAtMs, previousSecret: current.secret, previousDigest: this.caDigest });
    return this.token(role);
  }

  /**
   * The role a presented token grants. Throws TOKEN_MALFORMED/TOKEN_VERSION (shape),
   * TOKEN_DIGEST_MISMATCH (another cluster's CA), TOKEN_EXPIRED, TOKEN_ROTATED or TOKEN_INVALID.
   */
  match(presented: string, clock: Clock): NodeRole {
    const parsed = parseJoinToken(presented);
    // A token of the root this cluster rotated away from is refused as rotated, not as another cluster's.
    let rotatedRoot = false;
    for (const role of ROLES) {
      const entry = this.roleToken(role);
      if (entry.previousSecret === undefined || entry.previousDigest === undefined || entry.previousDigest === this.caDigest) continue;
      if (equalConstantTime(parsed.caDigest, entry.previousDigest) && equalConstantTime(parsed.secret, entry.previousSecret)) rotatedRoot = true;
    }
    if (rotatedRoot) {
      throw new ShoalError("TOKEN_ROTATED", "this join token was replaced when the root CA was rotated; get the current one with `shoal join-token worker|manager`");
    }
    if (!equalConstantTime(parsed.caDigest, this.caDigest)) {
      throw new ShoalError("TOKEN_DIGEST_MISMATCH", "the token belongs to another cluster's CA; use a join token of this cluster");
    }
    // Compare against every secret so the time taken does not depend on which one matched.
    let matched: NodeRole | undefined;
    let rotated = false;
    for (const role of ROLES) {
      const entry = this.roleToken(role);
      if (equalConstantTime(parsed.secret, entry.secret)) matched = role;
      if (entry.previousSecret !== undefined && equalConstantTime(parsed.secret, entry.previousSecret)) rotated = true;
    }
    if (matched !== undefined) {
      const expiresAtMs = this.roleToken(matched).expiresAtMs;
      if (expiresAtMs !== undefined && clock.nowMs() >= expiresAtMs) {
        throw new ShoalError("TOKEN_EXPIRED", `the ${matched === "swarm-manager" ? "manager" : "worker"} join token expired at ${new Date(expiresAtMs).toISOString()}; get a new one with \`shoal join-token --rotate\``);
      }
      return matched;
    }
    if (rotated) {
      throw new ShoalError("TOKEN_ROTATED", "this join token was rotated and is no longer accepted; get the current one with `shoal join-token worker|manager`");
    }
    throw new ShoalError("TOKEN_INVALID", "the join token is not valid for this cluster; get the current one with `shoal join-token worker|manager`");
  }
}
