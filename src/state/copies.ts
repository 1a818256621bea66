// Copies of stored objects: callers get their own copies (or frozen ones) so nothing can change the
// store behind Raft's back.

/** Deep copy of a decoded protobuf object: plain objects, arrays, Buffers, Dates, primitives. */
export function deepCopy<T>(value: T): T {
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Uint8Array) return Buffer.from(value) as T;
  if (value instanceof Date) return new Date(value.getTime()) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => deepCopy(v)) as T;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) out[key] = deepCopy(v);
  return out as T;
}

/**
 * Freezes an object graph in place. Byte arrays cannot be frozen by the language; the store never
 * hands its own byte arrays to read callers (reads return deep copies).
 */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (value === null || typeof value !== "object" || value instanceof Uint8Array || Object.isFrozen(value)) return value;
  for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  return Object.freeze(value);
}

/** A copy of a string map with its keys in sorted order, so encodings are canonical. */
export function sortedMap(map: { [key: string]: string } | undefined): { [key: string]: string } {
  const out: { [key: string]: string } = {};
  if (map === undefined) return out;
  for (const key of Object.keys(map).sort()) out[key] = map[key]!;
  return out;
}
