import { describe, expect, it } from "vitest";
import { buildMessages, type HistoryRow } from "../../src/models/prompt.ts";

/* The model's view of a stored history (src/models/prompt.ts). */

const call = (id: string) => ({
  type: "tool-call",
  tool_call_id: id,
  tool_name: "execute",
  args: {},
});
const result = (id: string) => ({
  type: "tool-result",
  tool_call_id: id,
  tool_name: "execute",
  result: { exit_code: 0 },
});
const contextFile = {
  type: "context-file",
  context_file_path: "AGENTS.md",
  context_file_content: "Run the tests.",
};

describe("buildMessages", () => {
  it("puts a context file stored while tool calls waited after their results, never between", () => {
    const rows: HistoryRow[] = [
      { id: 1, role: "user", content: [{ type: "text", text: "go" }] },
      { id: 2, role: "assistant", content: [call("a"), call("b")] },
      { id: 3, role: "tool", content: [result("a")] },
      { id: 4, role: "user", content: [contextFile] },
      { id: 5, role: "tool", content: [result("b")] },
      { id: 6, role: "assistant", content: [{ type: "text", text: "done" }] },
    ];
    expect(buildMessages(rows, new Map()).map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "tool",
      "tool",
      "user",
      "assistant",
    ]);
  });

  it("keeps the stored order when no call waits", () => {
    const rows: HistoryRow[] = [
      { id: 1, role: "user", content: [contextFile] },
      { id: 2, role: "user", content: [{ type: "text", text: "go" }] },
      { id: 3, role: "assistant", content: [call("a")] },
      { id: 4, role: "tool", content: [result("a")] },
      { id: 5, role: "user", content: [{ type: "text", text: "again" }] },
    ];
    expect(buildMessages(rows, new Map()).map((m) => m.role)).toEqual([
      "user",
      "user",
      "assistant",
      "tool",
      "user",
    ]);
  });
});
