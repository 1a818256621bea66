// Scraping a daemon's `--metrics-addr` in tests: GET /metrics over real HTTP, and the Prometheus
// text format parsed into samples (name, labels, value) to look values up by name and labels.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export async function scrapeText(port: number, path = "/metrics", method = "GET"): Promise<{ status: number; contentType: string; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, contentType: res.headers.get("content-type") ?? "", text: await res.text() };
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample line; throws on a line that is neither a comment nor a sample. */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (m === null) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

export async function scrape(port: number): Promise<Sample[]> {
  const { status, text } = await scrapeText(port);
  if (status !== 200) throw new Error(`GET /metrics answered ${status}: ${text}`);
  return parseSamples(text);
}

/** The value of the one sample `name` whose labels include `labels`; undefined when there is none. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples ${name} ${JSON.stringify(labels)}; give more labels`);
  return found[0]?.value;
}

export function sumOf(samples: Sample[], name: string): number {
  return samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
}
