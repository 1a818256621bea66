// Command-line flags of the benchmark scripts: `--name value`.

/** The word after `name` on the command line, or undefined when the flag is absent. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** A positive integer flag; `fallback` when absent, an error when it is not a positive integer. */
export function argNumber(name: string, fallback: number): number {
  const text = argValue(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
}
