// The one place that wires @peculiar/x509 to Node's webcrypto. Its decorators need the
// reflect-metadata polyfill loaded before the library itself (TOOLCHAIN.md §3).
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

export const ECDSA_P256_SHA256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
