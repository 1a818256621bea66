// Where a node keeps its files under `--data-dir DIR` (DESIGN.md §2).
import { join } from "node:path";

export interface DataDirPaths {
  /** Managers only: the encrypted LevelDB. */
  stateDir: string;
  keysDir: string;
  /** Managers only: the DEK file (see dek-file.ts). */
  dekFile: string;
  certificatesDir: string;
  rootCaFile: string;
  nodeCertFile: string;
  /** PKCS#8 PEM, encrypted with the unlock key while autolock is on (see node-key.ts). */
  nodeKeyFile: string;
  socketFile: string;
}

export function dataDirPaths(dataDir: string): DataDirPaths {
  const certificatesDir = join(dataDir, "certificates");
  const keysDir = join(dataDir, "keys");
  return {
    stateDir: join(dataDir, "state"),
    keysDir,
    dekFile: join(keysDir, "dek"),
    certificatesDir,
    rootCaFile: join(certificatesDir, "root-ca.crt"),
    nodeCertFile: join(certificatesDir, "node.crt"),
    nodeKeyFile: join(certificatesDir, "node.key"),
    socketFile: join(dataDir, "shoal.sock"),
  };
}
