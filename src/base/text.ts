// The one rule for characters that must not reach a terminal raw: C0 controls (tab and newline
// included), DEL, C1 controls, and the bidi embedding/override/isolate controls that reorder what a
// reader sees. Managers refuse them in what nodes report; the CLI escapes them in what it shows.
import { ShoalError } from "./errors.js";

// U+0000–U+001F, U+007F–U+009F, U+202A–U+202E, U+2066–U+2069.
const UNSAFE_CHAR = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/gu;

/** The index of the first control or bidi-control character, or -1. */
export function unsafeCharIndex(text: string): number {
  const match = UNSAFE_CHAR.exec(text);
  return match === null ? -1 : match.index;
}

/** How a character is written when escaped: `\x1b` below U+0100, `\u202e` above. */
export function escapedChar(char: string): string {
  const code = char.codePointAt(0)!;
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** `text` with every control and bidi-control character written as an escape, so it prints as what it is. */
export function escapeUnsafeChars(text: string): string {
  return text.replace(UNSAFE_CHARS, escapedChar);
}

/** Refuses a control or bidi-control character in reported text, naming the field and the character. */
export function checkNoControlChars(value: string, field: string): void {
  const at = unsafeCharIndex(value);
  if (at >= 0) {
    throw new ShoalError(
      "INVALID_ARGUMENT",
      `${field} contains the control character ${escapedChar(value[at]!)} at position ${at}; reported text may not contain control or bidi-control characters`,
    );
  }
}
