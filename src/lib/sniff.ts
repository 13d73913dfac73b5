/*
 * Content sniffing for uploads: the declared Content-Type must match what the bytes are, so a
 * file served back with its stored type is never something else (an HTML page posing as text,
 * an executable posing as an image).
 */

export const allowedUploadTypes = [
  "image/png",
  "image/jpeg",
  "image/gif",
  "image/webp",
  "text/plain",
] as const;
export type UploadType = (typeof allowedUploadTypes)[number];

function startsWith(bytes: Uint8Array, signature: number[], offset = 0): boolean {
  if (bytes.length < offset + signature.length) return false;
  return signature.every((b, i) => bytes[offset + i] === b);
}

const ascii = (s: string) => [...s].map((ch) => ch.charCodeAt(0));

/** The allowed type these bytes are, or null when they are none of them. */
export function sniffType(bytes: Uint8Array): UploadType | null {
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "image/jpeg";
  if (startsWith(bytes, ascii("GIF87a")) || startsWith(bytes, ascii("GIF89a"))) return "image/gif";
  if (startsWith(bytes, ascii("RIFF")) && startsWith(bytes, ascii("WEBP"), 8)) return "image/webp";
  return isPlainText(bytes) ? "text/plain" : null;
}

/** UTF-8 without NUL or other C0 control characters (tab, newline, carriage return, form feed excepted). */
function isPlainText(bytes: Uint8Array): boolean {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return false;
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point.
  return !/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text);
}

/** The media type of a Content-Type header without parameters, lower-cased. */
export function baseMediaType(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase();
}
