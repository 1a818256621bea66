// Join tokens (DESIGN.md §2): SWMTKN-1-<CA digest>-<secret>. The digest lets a joiner pin the root CA
// it fetched without TLS; the secret authorizes the join and decides the role. Error messages never
// repeat any part of a presented token.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
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

/**
 * Replaced tokens kept per role. Each `join-token --rotate` and each root CA rotation adds one;
 * 16 covers more rotations than an operator makes in a token's useful life (a leaked token is
 * rotated once or twice), while the cluster object, which every manager replicates and snapshots,
 * grows by at most 2 × 16 × ~90 bytes. A token older than that is still refused, as TOKEN_INVALID.
 */
export const MAX_REPLACED_TOKENS_PER_ROLE = 16;
const REPLACED_DIGEST_DOMAIN = "shoal replaced join token v1\0";

/**
 * What is kept of a rotated token: the root digest it pinned (public) and a SHA-256 of the token.
 * The secret is 128 CSPRNG bits, so the digest cannot be reversed by guessing (unlike a password's,
 * DESIGN.md §3 rule 6), and the store never holds a replaced secret that would still open a door
 * elsewhere (a script, an old manager) for whoever reads a snapshot.
 */
interface ReplacedToken {
  caDigest: string;
  tokenDigest: Buffer;
}

function replacedTokenDigest(caDigest: string, secret: string): Buffer {
  return createHash("sha256").update(REPLACED_DIGEST_DOMAIN).update(formatJoinToken(caDigest, secret)).digest();
}

interface RoleToken {
  secret: string;
  expiresAtMs: number | undefined;
  /** The tokens this role's earlier ones were, newest first, at most MAX_REPLACED_TOKENS_PER_ROLE. */
  replaced: ReplacedToken[];
}

const ROLES: readonly NodeRole[] = ["swarm-worker", "swarm-manager"];

/** Puts `token` first and drops what falls beyond the bound (and a repeat of `token`). */
function withReplaced(history: readonly ReplacedToken[], token: ReplacedToken): ReplacedToken[] {
  return [token, ...history.filter((t) => !t.tokenDigest.equals(token.tokenDigest))].slice(0, MAX_REPLACED_TOKENS_PER_ROLE);
}

/** The root digests replaced tokens pin other than `currentDigest` (roots this cluster rotated away from), from the store. */
export function replacedRootDigests(proto: JoinTokens | undefined, currentDigest: string): string[] {
  const digests = new Set<string>();
  for (const entry of [...(proto?.replacedWorker ?? []), ...(proto?.replacedManager ?? [])]) digests.add(entry.caDigest);
  for (const text of [proto?.previousWorker ?? "", proto?.previousManager ?? ""]) {
    if (text === "") continue;
    try {
      digests.add(parseJoinToken(text).caDigest);
    } catch {
      // A malformed stored token says nothing about a previous root.
    }
  }
  digests.delete(currentDigest);
  return [...digests].filter((d) => /^[0-9a-z]{50}$/.test(d));
}

/**
 * The worker and manager tokens a manager accepts, with optional expiries. A digest of each token
 * a role's current one replaced is persisted too (proto JoinTokens replaced_*), so TOKEN_ROTATED
 * survives a restart.
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
   * After a root CA rotation: fresh tokens for both roles pinning `newRoot`; the current ones join
   * the replaced tokens (TOKEN_ROTATED). Expiries are not carried over.
   */
  forNewRoot(newRoot: RootCA): JoinTokenSet {
    const tokens = new Map<NodeRole, RoleToken>();
    for (const role of ROLES) {
      const current = this.roleToken(role);
      tokens.set(role, {
        secret: parseJoinToken(generateJoinToken(newRoot)).secret,
        expiresAtMs: undefined,
        replaced: withReplaced(current.replaced, { caDigest: this.caDigest, tokenDigest: replacedTokenDigest(this.caDigest, current.secret) }),
      });
    }
    return new JoinTokenSet(newRoot.digest(), tokens);
  }

  /** Fresh tokens for both roles, without expiry. */
  static generate(rootCA: RootCA): JoinTokenSet {
    const tokens = new Map<NodeRole, RoleToken>();
    for (const role of ROLES) tokens.set(role, { secret: parseJoinToken(generateJoinToken(rootCA)).secret, expiresAtMs: undefined, replaced: [] });
    return new JoinTokenSet(rootCA.digest(), tokens);
  }

  /** Restores the set from the replicated cluster object; the tokens must belong to this root CA. */
  static fromProto(proto: JoinTokens, rootCA: RootCA): JoinTokenSet {
    const tokens = new Map<NodeRole, RoleToken>();
    for (const role of ROLES) {
      const worker = role === "swarm-worker";
      const parsed = parseJoinToken(worker ? proto.worker : proto.manager);
      verifyTokenDigest(parsed, rootCA.certPem);
      const expiresAt = worker ? proto.workerExpiresAt : proto.managerExpiresAt;
      const stored = worker ? proto.replacedWorker : proto.replacedManager;
      // Newest first as stored; anything past the bound (a store written with a larger one) is dropped.
      let replaced: ReplacedToken[] = stored
        .filter((t) => t.tokenDigest.length === 32)
        .slice(0, MAX_REPLACED_TOKENS_PER_ROLE)
        .map((t) => ({ caDigest: t.caDigest, tokenDigest: Buffer.from(t.tokenDigest) }));
      // An older version kept the one replaced token in full (previous_*): it becomes the newest
      // entry, and is written back as a digest only. After a root CA rotation it pins the old
      // root's digest, so it is refused as rotated, not as another cluster's.
      const legacy = worker ? proto.previousWorker : proto.previousManager;
      if (legacy !== undefined && legacy !== "") {
        const previous = parseJoinToken(legacy);
        replaced = withReplaced(replaced, { caDigest: previous.caDigest, tokenDigest: replacedTokenDigest(previous.caDigest, previous.secret) });
      }
      tokens.set(role, { secret: parsed.secret, expiresAtMs: expiresAt?.getTime(), replaced });
    }
    return new JoinTokenSet(rootCA.digest(), tokens);
  }

  toProto(): JoinTokens {
    const expiry = (role: NodeRole): Date | undefined => {
      const ms = this.roleToken(role).expiresAtMs;
      return ms === undefined ? undefined : new Date(ms);
    };
    const replaced = (role: NodeRole) => this.roleToken(role).replaced.map((t) => ({ caDigest: t.caDigest, tokenDigest: Buffer.from(t.tokenDigest) }));
    return {
      worker: this.token("swarm-worker"),
      manager: this.token("swarm-manager"),
      workerExpiresAt: expiry("swarm-worker"),
      managerExpiresAt: expiry("swarm-manager"),
      previousWorker: "",
      previousManager: "",
      replacedWorker: replaced("swarm-worker"),
      replacedManager: replaced("swarm-manager"),
    };
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

  /** How many replaced tokens of a role are remembered (tests and diagnostics; never the tokens). */
  replacedCount(role: NodeRole): number {
    return this.roleToken(role).replaced.length;
  }

  /** Replaces a role's token; the old one is refused from now on. Returns the new token. */
  rotate(role: NodeRole, options: { expiresAt?: Date } = {}): string {
    const current = this.roleToken(role);
    const expiresAtMs = options.expiresAt?.getTime();
    if (expiresAtMs !== undefined && !Number.isFinite(expiresAtMs)) throw new ShoalError("INVALID_ARGUMENT", "expiresAt must be a valid date");
    const secret = bytesToBase36(randomBytes(JOIN_TOKEN_SECRET_BYTES), JOIN_TOKEN_SECRET_LENGTH);
    const replaced = withReplaced(current.replaced, { caDigest: this.caDigest, tokenDigest: replacedTokenDigest(this.caDigest, current.secret) });
    this.tokens.set(role, { secret, expiresAtMs, replaced });
    return this.token(role);
  }

  /**
   * The role a presented token grants. Throws TOKEN_MALFORMED/TOKEN_VERSION (shape),
   * TOKEN_DIGEST_MISMATCH (another cluster's CA), TOKEN_EXPIRED, TOKEN_ROTATED or TOKEN_INVALID.
   */
  match(presented: string, clock: Clock): NodeRole {
    const parsed = parseJoinToken(presented);
    // Every replaced token of both roles is compared, so the time taken does not say which one matched.
    const presentedDigest = replacedTokenDigest(parsed.caDigest, parsed.secret);
    let replaced = false;
    for (const role of ROLES) {
      for (const entry of this.roleToken(role).replaced) {
        if (timingSafeEqual(entry.tokenDigest, presentedDigest)) replaced = true;
      }
    }
    const currentRoot = equalConstantTime(parsed.caDigest, this.caDigest);
    // A token of the root this cluster rotated away from is refused as rotated, not as another cluster's.
    if (replaced && !currentRoot) {
      throw new ShoalError("TOKEN_ROTATED", "this join token was replaced when the root CA was rotated; get the current one with `shoal join-token worker|manager`");
    }
    if (!currentRoot) {
      throw new ShoalError("TOKEN_DIGEST_MISMATCH", "the token belongs to another cluster's CA; use a join token of this cluster");
    }
    // Compare against every secret so the time taken does not depend on which one matched.
    let matched: NodeRole | undefined;
    for (const role of ROLES) {
      if (equalConstantTime(parsed.secret, this.roleToken(role).secret)) matched = role;
    }
    if (matched !== undefined) {
      const expiresAtMs = this.roleToken(matched).expiresAtMs;
      if (expiresAtMs !== undefined && clock.nowMs() >= expiresAtMs) {
        throw new ShoalError("TOKEN_EXPIRED", `the ${matched === "swarm-manager" ? "manager" : "worker"} join token expired at ${new Date(expiresAtMs).toISOString()}; get a new one with \`shoal join-token --rotate\``);
      }
      return matched;
    }
    if (replaced) {
      throw new ShoalError("TOKEN_ROTATED", "this join token was rotated and is no longer accepted; get the current one with `shoal join-token worker|manager`");
    }
    throw new ShoalError("TOKEN_INVALID", "the join token is not valid for this cluster; get the current one with `shoal join-token worker|manager`");
  }
}
