// `--metrics-addr HOST:PORT`: where the Prometheus endpoint listens. Off unless given; a host other
// than loopback is refused unless the operator also passes `--metrics-allow-remote`, because the
// endpoint has no authentication (as Docker's `metrics-addr`, it is meant for a local scraper or a
// deliberately exposed, firewalled port).
import { isIP } from "node:net";
import { ShoalError } from "../../base/errors.js";

export interface MetricsAddr {
  /** As given, without brackets around an IPv6 address. */
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
}

/** True for 127.0.0.0/8, ::1 (also as ::ffff:127.x) and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || (h.startsWith("::ffff:") && h.slice(7).startsWith("127.") && isIP(h.slice(7)) === 4);
  return false;
}

export function parseMetricsAddr(text: string, allowRemote: boolean): MetricsAddr {
  const colon = text.lastIndexOf(":");
  const rawHost = colon < 0 ? "" : text.slice(0, colon);
  const portText = colon < 0 ? "" : text.slice(colon + 1);
  const host = rawHost.startsWith("[") && rawHost.endsWith("]") ? rawHost.slice(1, -1) : rawHost;
  const port = Number(portText);
  const hostOk = host !== "" && (isIP(host) !== 0 || /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(host)) && (isIP(host) !== 6 || rawHost.startsWith("["));
  if (!hostOk || !/^\d{1,5}$/.test(portText) || port > 65535) {
    throw new ShoalError("INVALID_ARGUMENT", `--metrics-addr ${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:9323, or [::1]:9323)`);
  }
  if (!allowRemote && !isLoopbackHost(host)) {
    throw new ShoalError(
      "METRICS_ADDR_NOT_LOOPBACK",
      `--metrics-addr ${text}: the metrics endpoint has no authentication, so it listens only on loopback (127.0.0.1, [::1], localhost) unless you also pass --metrics-allow-remote`,
    );
  }
  return { host, port };
}
