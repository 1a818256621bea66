// The certificate authority library: root CA, node certificates, join tokens, renewal timing and
// the revocation list. Other layers import from here.
export { createNodeKeyAndCsr, verifyCsr, type NodeKeyAndCsr, type VerifiedCsr } from "./csr.js";
export {
  createRootCA,
  loadRootCA,
  RootCA,
  caDigestOf,
  normalizeSerial,
  DEFAULT_NODE_CERT_VALIDITY_MS,
  MIN_NODE_CERT_VALIDITY_MS,
  NOT_BEFORE_BACKDATE_MS,
  ROOT_CA_COMMON_NAME,
  type IssueNodeCertificateArgs,
  type IssuedNodeCertificate,
} from "./root-ca.js";
export { NODE_ROLES, DEFAULT_ZONE, isNodeRole, isValidZone, spiffeUri, parseSpiffeUri, type NodeRole, type NodeIdentity } from "./node-identity.js";
export {
  verifyNodeCertificate,
  verifyExpiredNodeCertificate,
  isCertificateExpired,
  parseNodeCertificate,
  NodeCertificateVerifier,
  type NodeCertificateInfo,
  type VerifyNodeCertificateOptions,
  type RevocationChecker,
} from "./verify.js";
export { pickRenewalTime, RENEWAL_WINDOW_START, RENEWAL_WINDOW_END } from "./renewal.js";
export {
  generateJoinToken,
  parseJoinToken,
  verifyTokenDigest,
  JoinTokenSet,
  JOIN_TOKEN_LENGTH,
  MAX_REPLACED_TOKENS_PER_ROLE,
  replacedRootDigests,
  type ParsedJoinToken,
} from "./join-token.js";
export { RevocationList, renderCrl, REVOCATION_RETENTION_AFTER_EXPIRY_MS, DEFAULT_CRL_NEXT_UPDATE_MS, type RevokedNodeEntry } from "./revocation.js";
export { decodePem, encodePem } from "./pem.js";
export { signExpiredRenewalProof, verifyExpiredRenewalProof, EXPIRED_RENEWAL_PROOF_DOMAIN, MAX_EXPIRED_RENEWAL_PROOF_BYTES } from "./expired-renewal-proof.js";
export { importRootCA, crossSignRoot, splitPemBundle, trustBundleOf, isIssuedBy } from "./root-rotation.js";
export {
  signGrant,
  verifyGrant,
  managerGrantSigner,
  GRANT_SIGNING_DOMAIN,
  GRANT_SIGNING_DOMAIN_V2,
  MAX_GRANT_BYTES,
  MAX_MANAGER_SIGNED_GRANT_BYTES,
  MAX_GRANT_LIFETIME_MS,
  MAX_GRANT_CLOCK_SKEW_MS,
  type PrefetchGrant,
  type GrantExpectation,
  type GrantSigner,
  type ManagerGrantSigner,
} from "./grant.js";
export {
  checkExternalCA,
  checkExternalCertificate,
  externalCAOrigin,
  signWithExternalCA,
  EXTERNAL_CA_PROTOCOLS,
  EXTERNAL_CA_TIMEOUT_MS,
  type ExternalSignArgs,
} from "./external-ca.js";
