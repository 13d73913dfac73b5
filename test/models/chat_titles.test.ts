import { describe, expect, it } from "vitest";
import { titleMessages } from "../../src/models/chat_titles.ts";
import { normalizeQuickText } from "../../src/models/quick_text.ts";

/* The context a title is written from, and how a model's answer becomes a title. */

const row = (id: number, role: string, text: string) => ({
  id,
  role,
  content: [{ type: "text", text }],
});

describe("titleMessages", () => {
  it("marks the turns left out between the first turn and the last ones", () => {
    const rows = [
      row(1, "user", "u1"),
      row(2, "assistant", "a1"),
      row(9, "user", "u5"),
      row(10, "assistant", "a5"),
    ];
    expect(titleMessages(rows, 5)).toEqual([
      { role: "user", content: "u1" },
      { role: "assistant", content: "a1" },
      { role: "user", content: "[… 3 turns left out …]" },
      { role: "user", content: "u5" },
      { role: "assistant", content: "a5" },
    ]);
  });

  it("marks nothing when every turn is there, and skips messages without text", () => {
    const rows = [
      row(1, "user", "u1"),
      { id: 2, role: "assistant", content: [{ type: "tool-call" }] },
      row(3, "user", "u2"),
    ];
    expect(titleMessages(rows, 2)).toEqual([
      { role: "user", content: "u1" },
      { role: "user", content: "u2" },
    ]);
  });
});

describe("normalizeQuickText", () => {
  it.each([
    ['"Fixing the login bug"', "Fixing the login bug"],
    ["Title: **Deploy plan**", "Deploy plan"],
    ["\n\n  Refactor   the parser  \nExplanation follows", "Refactor the parser"],
    ["“Quoted”", "Quoted"],
  ])("turns %j into %j", (raw, want) => {
    expect(normalizeQuickText(raw, 80)).toBe(want);
  });

  it("cuts a long answer at a word boundary", () => {
    expect(normalizeQuickText("one two three four five six", 14)).toBe("one two three");
    expect(normalizeQuickText("", 10)).toBe("");
  });
});
