// src/crypto: secure-memory keys, XChaCha20-Poly1305 sealing with associated data, unlock keys.
export { DataKey, KEY_BYTES, KEY_ID_BYTES } from "./data-key.js";
export { seal, sealInto, open, SEALED_VERSION, NONCE_BYTES, TAG_BYTES, SEAL_OVERHEAD_BYTES } from "./aead.js";
export { generateUnlockKey, parseUnlockKey, kekFromUnlockKey, UNLOCK_KEY_PREFIX } from "./unlock-key.js";
