// Reads what the CLI must never take on its command line or echo: secret data (a file or stdin,
// bounded to 500 KiB) and the unlock key (one line of stdin, or a prompt that does not echo).
import { open } from "node:fs/promises";
import { ShoalError } from "../base/errors.js";
import { MAX_SECRET_BYTES } from "../state/limits.js";

// The store's bound (DESIGN.md §3.6): the CLI refuses a larger secret before sending it.
export { MAX_SECRET_BYTES };
/** An unlock key is 49 characters; anything far longer is not one. */
const MAX_UNLOCK_KEY_LINE_BYTES = 4096;
/** The managers' bound on a registry password (registries.ts) is 16 KiB. */
const MAX_PASSWORD_LINE_CHARS = 16 * 1024;

export interface InputStream extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

/** Collects a stream until EOF, failing as soon as it passes `maxBytes` rather than buffering it all. */
export async function readBounded(stream: NodeJS.ReadableStream, maxBytes: number, tooLarge: () => ShoalError): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let totalBytes = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    totalBytes += buf.length;
    if (totalBytes > maxBytes) {
      zeroAll(chunks);
      throw tooLarge();
    }
    chunks.push(buf);
  }
  const data = Buffer.concat(chunks);
  zeroAll(chunks);
  return data;
}

function zeroAll(chunks: Buffer[]): void {
  for (const c of chunks) c.fill(0);
}

/** Secret bytes from FILE, or from stdin when the source is "-". */
export async function readSecretData(source: string, stdin: NodeJS.ReadableStream, name: string): Promise<Buffer> {
  const tooLarge = (): ShoalError =>
    new ShoalError("MESSAGE_TOO_LARGE", `secret ${name} is larger than 500 KiB: secrets must be at most ${MAX_SECRET_BYTES} bytes`);
  // open() succeeds on a directory and the read fails (EISDIR); any such error is the user's file,
  // so it gets the same sentence and exit class as a file that cannot be opened.
  const unreadable = (err: unknown): ShoalError => {
    const code = (err as NodeJS.ErrnoException).code;
    return new ShoalError(
      code === "ENOENT" ? "NOT_FOUND" : "INVALID_ARGUMENT",
      `cannot read secret file ${source} (${code ?? "error"}): give a readable file, or - to read stdin`,
    );
  };
  let data: Buffer;
  if (source === "-") {
    data = await readBounded(stdin, MAX_SECRET_BYTES, tooLarge);
  } else {
    let handle;
    try {
      handle = await open(source, "r");
    } catch (err) {
      throw unreadable(err);
    }
    try {
      const stat = await handle.stat();
      if (stat.isFile() && stat.size > MAX_SECRET_BYTES) throw tooLarge();
      data = await readBounded(handle.createReadStream(), MAX_SECRET_BYTES, tooLarge);
    } catch (err) {
      throw err instanceof ShoalError ? err : unreadable(err);
    } finally {
      await handle.close();
    }
  }
  if (data.length === 0) {
    throw new ShoalError("INVALID_ARGUMENT", `secret ${name} is empty: give a file or stdin with the secret's bytes`);
  }
  return data;
}

/** The unlock key: typed at a prompt without echo on a TTY, else the first line of stdin. */
export async function readUnlockKey(stdin: InputStream, prompt: (text: string) => void): Promise<string> {
  const line = stdin.isTTY === true && stdin.setRawMode !== undefined ? await promptWithoutEcho(stdin, prompt) : await readFirstLine(stdin);
  const key = line.trim();
  if (key.length === 0) {
    throw new ShoalError("INVALID_ARGUMENT", "no unlock key was given: pipe it on stdin or type it at the prompt");
  }
  return key;
}

/**
 * A registry password: the first line of stdin with `--password-stdin` (as `docker login`), else
 * typed at a prompt without echo; never an argument, so it stays out of shell history and `ps`.
 */
export async function readRegistryPassword(stdin: InputStream, prompt: (text: string) => void, fromStdin: boolean): Promise<string> {
  let line: string;
  if (fromStdin) line = await readFirstLine(stdin, MAX_PASSWORD_LINE_CHARS, () => new ShoalError("INVALID_ARGUMENT", "the password on stdin is far too long (or not one line)"));
  else if (stdin.isTTY === true && stdin.setRawMode !== undefined) line = await promptWithoutEcho(stdin, prompt, "Password: ", "login cancelled: no password was sent");
  else throw new ShoalError("INVALID_ARGUMENT", "no password: pipe it on stdin with --password-stdin, or run the command on a terminal to type it");
  if (line.length === 0) throw new ShoalError("INVALID_ARGUMENT", "the password is empty");
  return line;
}

const unlockKeyTooLong = (): ShoalError => new ShoalError("UNLOCK_KEY_MALFORMED", "the unlock key on stdin is far too long: give the SWMKEY-1-... key on one line");

async function readFirstLine(stdin: NodeJS.ReadableStream, maxChars = MAX_UNLOCK_KEY_LINE_BYTES, tooLong = unlockKeyTooLong): Promise<string> {
  let text = "";
  for await (const chunk of stdin) {
    text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    const newline = text.search(/\r?\n/);
    if (newline >= 0) return text.slice(0, newline);
    if (text.length > maxChars) throw tooLong();
  }
  return text;
}

/** Raw mode turns off the terminal's echo; the typed characters are kept only in this closure. */
function promptWithoutEcho(stdin: InputStream, prompt: (text: string) => void, label = "Enter unlock key: ", cancelled = "unlock cancelled: no key was sent"): Promise<string> {
  // Echo goes off before the prompt shows, so a key typed (or pasted) at once is never displayed.
  stdin.setRawMode?.(true);
  prompt(label);
  return new Promise<string>((resolvePromise, reject) => {
    let typed = "";
    const finish = (err?: ShoalError): void => {
      stdin.removeListener("data", onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      prompt("\n");
      if (err !== undefined) reject(err);
      else resolvePromise(typed);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of typeof chunk === "string" ? chunk : chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return finish();
        if (ch === "\u0003") return finish(new ShoalError("INVALID_ARGUMENT", cancelled));
        if (ch === "\u007f" || ch === "\b") typed = typed.slice(0, -1);
        else if (typed.length < MAX_UNLOCK_KEY_LINE_BYTES) typed += ch;
      }
    };
    stdin.on("data", onData);
    stdin.resume();
  });
}
