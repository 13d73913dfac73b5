import { describe, expect, it } from "vitest";
import { SseDecoder } from "../../packages/client/src/sse.ts";

describe("the client's SSE decoder", () => {
  it("keeps the id of a block without data, as a keep-alive moves Last-Event-ID", () => {
    const d = new SseDecoder();
    expect(d.feed("id: 7.1\n: keep-alive\n\n")).toEqual([
      { event: "message", data: undefined, id: "7.1" },
    ]);
    // A comment alone dispatches nothing.
    expect(d.feed(": watching\n\n")).toEqual([]);
  });

  it("joins lines split across chunks, CRLF and CR line ends, and multi-line data", () => {
    const d = new SseDecoder();
    expect(d.feed("id: 1.2\r\nevent: sta")).toEqual([]);
    expect(d.feed('tus\rdata: {"a":\ndata: 1}\r')).toEqual([]);
    expect(d.feed("\n\r\n")).toEqual([{ event: "status", data: '{"a":\n1}', id: "1.2" }]);
  });

  it("drops a block cut off before its blank line, and an id with NUL", () => {
    const d = new SseDecoder();
    expect(d.feed("id: a\u0000b\ndata: x\n\nevent: message\ndata: half")).toEqual([
      { event: "message", data: "x", id: undefined },
    ]);
  });
});
