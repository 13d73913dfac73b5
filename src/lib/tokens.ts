import { createHash, randomBytes, randomInt, timingSafeEqual } from "node:crypto";

/*
 * API keys and agent tokens are `<id>-<secret>`: the id (10 chars of [a-z0-9]) finds the row, the
 * secret (32 chars, 190 bits) proves possession. Only SHA-256(secret) is stored: the secret is
 * random, so a slow password hash would add latency to every request without adding safety.
 */

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
const idLength = 10;
const secretLength = 32;
const tokenPattern = /^([a-z0-9]{10})-([A-Za-z0-9_-]{22,128})$/;

export interface ParsedToken {
  id: string;
  secret: string;
}

export interface GeneratedToken extends ParsedToken {
  token: string;
  hashedSecret: Buffer;
}

export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

export function generateToken(): GeneratedToken {
  let id = "";
  for (let i = 0; i < idLength; i++) id += idAlphabet[randomInt(idAlphabet.length)];
  const secret = randomBytes(24).toString("base64url").slice(0, secretLength);
  return { id, secret, token: `${id}-${secret}`, hashedSecret: hashSecret(secret) };
}

/** Splits a presented token; null when it does not have the token format. */
export function parseToken(token: string): ParsedToken | null {
  const m = tokenPattern.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

export function isTokenFormat(token: string): boolean {
  return tokenPattern.test(token);
}

/** Compares a presented secret with a stored hash in time independent of where they differ. */
export function secretMatches(secret: string, storedHash: Buffer): boolean {
  const presented = hashSecret(secret);
  return storedHash.length === presented.length && timingSafeEqual(presented, storedHash);
}
