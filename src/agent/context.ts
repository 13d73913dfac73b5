import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/*
 * The agent's context snapshot (docs/api.md "Workspace context"): what the workspace offers the
 * model, read from the workspace root and pushed with PUT /workspaceagents/me/context.
 */

/** Instruction files, looked for in the root (the same names `pgchatd chat context add` reads). */
export const instructionFileNames = ["AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md"];
/** Skills: one directory per skill under this one, each with a SKILL.md. */
const skillsDir = ".agents/skills";
/** MCP configuration, passed on as it is. */
const mcpConfigFile = ".mcp.json";
/** The server refuses larger bodies (src/server/routes/chat_context.ts): sent as oversize. */
export const maxResourceChars = 256 * 1024;
/** A workspace with more skills than this is sent with the first ones (the push allows 256). */
const maxSkills = 200;

export interface ContextResource {
  source: string;
  kind: "instruction_file" | "skill" | "mcp_config";
  body: string;
  status?: "ok" | "oversize" | "unreadable";
  error?: string | null;
}

async function readResource(
  root: string,
  source: string,
  kind: ContextResource["kind"],
): Promise<ContextResource | undefined> {
  const file = path.join(root, source);
  let text: string;
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return undefined;
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    return { source, kind, body: "", status: "unreadable", error: String(code ?? err) };
  }
  if (text.length > maxResourceChars) {
    return {
      source,
      kind,
      body: "",
      status: "oversize",
      error: `larger than ${maxResourceChars} characters`,
    };
  }
  // Text the server can store: NUL characters cannot be.
  return { source, kind, body: text.replaceAll("\u0000", "\uFFFD") };
}

/** The snapshot of the workspace at `root`, in a stable order. */
export async function readContextSnapshot(root: string): Promise<ContextResource[]> {
  const out: ContextResource[] = [];
  for (const name of instructionFileNames) {
    const r = await readResource(root, name, "instruction_file");
    if (r) out.push(r);
  }
  const skills = await fs.readdir(path.join(root, skillsDir)).catch(() => [] as string[]);
  for (const name of skills.sort().slice(0, maxSkills)) {
    const r = await readResource(root, `${skillsDir}/${name}/SKILL.md`, "skill");
    if (r) out.push(r);
  }
  const mcp = await readResource(root, mcpConfigFile, "mcp_config");
  if (mcp) out.push(mcp);
  return out;
}

/** A fingerprint of a snapshot: the agent pushes only when it changes. */
export function snapshotDigest(resources: ContextResource[]): string {
  return createHash("sha256").update(JSON.stringify(resources)).digest("hex");
}
