import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../src/server/errors.ts";
import {
  type ChatSearch,
  labelKeyPattern,
  labelsSchema,
  maxLabels,
  maxLabelValueLength,
  parseChatSearch,
  parseLabelFilters,
  prStatuses,
  searchKeys,
} from "../../src/server/search.ts";

/** The ApiError a call throws; fails the test when it returns or throws anything else. */
function apiErrorOf(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return err as ApiError;
  }
  throw new Error("expected an ApiError, but the call returned");
}

const qError = (q: string | undefined) => apiErrorOf(() => parseChatSearch(q));
const labelError = (values: string[]) => apiErrorOf(() => parseLabelFilters(values));

/** Asserts a 400 on field q whose message contains every fragment. */
function expectQError(q: string, ...fragments: string[]) {
  const err = qError(q);
  expect(err.status).toBe(400);
  expect(err.validations).toEqual([{ field: "q", detail: err.message }]);
  for (const fragment of fragments) expect(err.message).toContain(fragment);
  return err;
}

function expectLabelError(values: string[], ...fragments: string[]) {
  const err = labelError(values);
  expect(err.status).toBe(400);
  expect(err.validations).toEqual([{ field: "label", detail: err.message }]);
  for (const fragment of fragments) expect(err.message).toContain(fragment);
  return err;
}

describe("parseChatSearch: terms and whitespace", () => {
  it("an absent, empty or all-whitespace q means no filters and not archived", () => {
    for (const q of [undefined, "", "   ", " \t\n\r "]) {
      expect(parseChatSearch(q)).toEqual({ archived: false });
    }
  });

  it("any run of whitespace separates terms and leading/trailing whitespace is ignored", () => {
    expect(parseChatSearch("\t title:a \n\n  repo:o/r\r\n  pr:3  ")).toEqual({
      title: "a",
      repo: "o/r",
      pr: 3,
      archived: false,
    });
  });

  it("terms combine into one filter (AND)", () => {
    expect(
      parseChatSearch(
        'title:"fix bug" archived:true has_unread:false pr:42 repo:acme/api ' +
          "pr_title:Refactor pr_status:merged diff_url:https://github.com/acme/api/pull/42.diff",
      ),
    ).toEqual({
      title: "fix bug",
      archived: true,
      hasUnread: false,
      pr: 42,
      repo: "acme/api",
      prTitle: "Refactor",
      prStatus: "merged",
      diffUrl: "https://github.com/acme/api/pull/42.diff",
    } satisfies ChatSearch);
  });

  it("keys are case-insensitive but values keep their case", () => {
    expect(parseChatSearch("TITLE:Hello Repo:Acme/API PR_Title:WIP")).toEqual({
      title: "Hello",
      repo: "Acme/API",
      prTitle: "WIP",
      archived: false,
    });
  });
});

describe("parseChatSearch: each key", () => {
  it("title is any non-empty string, kept as typed", () => {
    expect(parseChatSearch("title:Ünïcødé✓")).toEqual({ title: "Ünïcødé✓", archived: false });
  });

  it("archived is true or false in any letter case and defaults to false", () => {
    expect(parseChatSearch("archived:true").archived).toBe(true);
    expect(parseChatSearch("archived:FALSE").archived).toBe(false);
    expect(parseChatSearch("archived:TrUe").archived).toBe(true);
    expect(parseChatSearch("title:x").archived).toBe(false);
  });

  it("archived rejects anything but true or false and names the value", () => {
    for (const v of ["yes", "1", "0", "t", "truee", '"true "']) {
      expectQError(`archived:${v}`, '"archived"', "true or false");
    }
  });

  it("has_unread is true or false in any letter case and otherwise absent", () => {
    expect(parseChatSearch("has_unread:true").hasUnread).toBe(true);
    expect(parseChatSearch("has_unread:False").hasUnread).toBe(false);
    expect(parseChatSearch("title:x")).not.toHaveProperty("hasUnread");
    expectQError("has_unread:maybe", '"has_unread"', '"maybe"');
  });

  it("pr is a positive 32-bit integer", () => {
    expect(parseChatSearch("pr:1").pr).toBe(1);
    expect(parseChatSearch("pr:2147483647").pr).toBe(2147483647);
    expect(parseChatSearch("pr:007").pr).toBe(7);
  });

  it("pr rejects zero, negatives, fractions, overflow and non-numbers", () => {
    for (const v of ["0", "-1", "+1", "1.5", "1e3", "2147483648", "99999999999999999999", "abc"]) {
      expectQError(`pr:${v}`, '"pr"', `"${v}"`, "2147483647");
    }
  });

  it("repo is a substring filter kept as typed", () => {
    expect(parseChatSearch("repo:git@github.com:acme/api.git").repo).toBe(
      "git@github.com:acme/api.git",
    );
  });

  it("pr_title is any non-empty string", () => {
    expect(parseChatSearch('pr_title:"Add search: part 1"').prTitle).toBe("Add search: part 1");
  });

  it("pr_status accepts draft, open, merged and closed in any case, normalised to lower case", () => {
    for (const status of prStatuses) {
      expect(parseChatSearch(`pr_status:${status}`).prStatus).toBe(status);
      expect(parseChatSearch(`pr_status:${status.toUpperCase()}`).prStatus).toBe(status);
    }
  });

  it("pr_status rejects other values and lists the allowed ones", () => {
    expectQError("pr_status:pending", '"pending"', "draft, open, merged, closed");
  });

  it("diff_url accepts http and https URLs with a host, kept as typed", () => {
    expect(parseChatSearch("diff_url:https://GitHub.com/a/b/pull/1.diff").diffUrl).toBe(
      "https://GitHub.com/a/b/pull/1.diff",
    );
    expect(parseChatSearch("diff_url:http://localhost:8080/x?y=1#z").diffUrl).toBe(
      "http://localhost:8080/x?y=1#z",
    );
  });

  it("diff_url rejects non-URLs, other protocols and URLs without a host", () => {
    for (const v of [
      "github.com/a/b",
      "ftp://example.com/x",
      "javascript:alert(1)",
      "file:///etc/passwd",
      "http://",
      "https://[::1",
      "mailto:a@b.c",
    ]) {
      expectQError(`diff_url:"${v}"`, '"diff_url"', "http or https URL");
    }
  });
});

describe("parseChatSearch: quoting and escapes", () => {
  it("a quoted value may contain spaces and colons", () => {
    expect(parseChatSearch('title:"a b: c"  repo:x').title).toBe("a b: c");
  });

  it('inside quotes \\" is a literal quote and \\\\ a literal backslash', () => {
    expect(parseChatSearch('title:"say \\"hi\\" \\\\o/"').title).toBe('say "hi" \\o/');
  });

  it("other backslashes inside quotes are kept literally", () => {
    expect(parseChatSearch('title:"C:\\path\\n"').title).toBe("C:\\path\\n");
  });

  it("an unquoted value may contain colons and backslashes", () => {
    expect(parseChatSearch("diff_url:https://x.io/y:z").diffUrl).toBe("https://x.io/y:z");
    expect(parseChatSearch("title:a:b:c").title).toBe("a:b:c");
    expect(parseChatSearch("title:a\\b").title).toBe("a\\b");
  });

  it("an SQL-injection-looking title is just text", () => {
    expect(parseChatSearch(`title:"'; DROP TABLE chats; --"`)).toEqual({
      title: "'; DROP TABLE chats; --",
      archived: false,
    });
    expect(parseChatSearch("title:%'/**/OR/**/1=1;--").title).toBe("%'/**/OR/**/1=1;--");
  });

  it("an unterminated quote is rejected and the term named", () => {
    expectQError('title:"abc def', "Unterminated quote", '"title:\\"abc def"');
    expectQError('title:"abc\\"', "Unterminated quote");
  });

  it("a closing quote must be followed by whitespace or the end", () => {
    expectQError('title:"a"b repo:x', "after the closing quote", '"title:\\"a\\"b"');
    expectQError('title:"a"repo:x', "after the closing quote");
  });

  it("a quote that starts mid-word is rejected and the term named", () => {
    expectQError('ti"tle:x', "Unexpected quote", '"ti\\"tle:x"');
    expectQError('title:a"b"', "Unexpected quote", '"title:a\\"b\\""');
    expectQError('"title":x', "Unexpected quote");
  });
});

describe("parseChatSearch: errors", () => {
  it("a bare word is rejected and named in the message", () => {
    const err = expectQError("title:x hello", '"hello"', "key:value", "Known keys:");
    expect(err.message).not.toContain("title:x");
    expectQError('"quoted words"', "Unexpected quote");
  });

  it("an unknown key is rejected, named with its term, and the known keys are listed", () => {
    const err = expectQError("foo:bar");
    expect(err.message).toBe(
      'Unknown search key "foo" in q (term "foo:bar"). Known keys: title, archived, ' +
        "has_unread, pr, repo, pr_title, pr_status, diff_url.",
    );
  });

  it("keys with characters other than letters, digits and underscores are unknown", () => {
    expectQError("ti-tle:x", 'Unknown search key "ti-tle"');
    expectQError("títle:x", "Unknown search key");
    // U+0130 lower-cases to "i̇"; U+212A (Kelvin) to "k": no Unicode folding reaches a real key.
    expectQError("T\u0130TLE:x", "Unknown search key");
  });

  it("a term with no key before the colon is rejected", () => {
    expectQError(":x", '":x"', "no key");
  });

  it("an empty value is rejected, quoted or not", () => {
    expectQError("title:", '"title"', "empty value");
    expectQError('title:""', '"title"', "empty value");
    expectQError("title: repo:x", '"title"', "empty value");
  });

  it("a repeated key is rejected and named, whatever its case", () => {
    expectQError("title:a title:b", '"title" appears more than once');
    expectQError("pr:1 PR:1", '"pr" appears more than once');
  });

  it("q longer than 2048 characters is rejected", () => {
    const ok = `title:x${" ".repeat(2048 - 7)}`;
    expect(parseChatSearch(ok).title).toBe("x");
    expectQError(`${ok} `, "too long", "2048");
  });

  it("a value longer than 256 characters after unquoting is rejected", () => {
    expect(parseChatSearch(`title:${"a".repeat(256)}`).title).toHaveLength(256);
    expect(parseChatSearch(`title:"${'\\"'.repeat(256)}"`).title).toBe('"'.repeat(256));
    expectQError(`title:${"a".repeat(257)}`, '"title"', "too long", "256");
    expectQError(`title:"${'\\"'.repeat(257)}"`, "too long");
  });

  it("NUL characters are rejected", () => {
    expectQError("title:a\0b", "NUL");
  });

  it("lone surrogates and control characters are ordinary value characters", () => {
    expect(parseChatSearch("title:\uD800x\u0001").title).toBe("\uD800x\u0001");
  });

  it("messages echo long terms truncated", () => {
    const err = expectQError(`${"w".repeat(1000)}`, "not key:value");
    expect(err.message.length).toBeLessThan(300);
  });
});

describe("parseLabelFilters", () => {
  it("no filters is an empty object", () => {
    expect(parseLabelFilters([])).toEqual({});
  });

  it("each filter is split at the first colon, so values may contain colons", () => {
    expect(
      parseLabelFilters(["env:prod", "url:https://x.io:8080/a", "team/sub.x-y_z:A B"]),
    ).toEqual({
      env: "prod",
      url: "https://x.io:8080/a",
      "team/sub.x-y_z": "A B",
    });
  });

  it("keys and values keep their case", () => {
    expect(parseLabelFilters(["Env:Prod"])).toEqual({ Env: "Prod" });
  });

  it("the same key and value twice is fine", () => {
    expect(parseLabelFilters(["env:prod", "env:prod"])).toEqual({ env: "prod" });
  });

  it("the same key with two different values is rejected, naming both", () => {
    expectLabelError(["env:prod", "env:dev"], '"env"', '"prod"', '"dev"');
  });

  it("a filter without a colon is rejected and named", () => {
    expectLabelError(["env"], '"env"', "key:value");
  });

  it("an empty key or value is rejected", () => {
    expectLabelError([":prod"], "must not be empty");
    expectLabelError(["env:"], '"env"', "must not be empty");
  });

  it("keys must match the label key pattern and be at most 64 characters", () => {
    for (const key of ["-x", ".x", "_x", "x y", "xé", "__proto__"]) {
      expectLabelError([`${key}:v`], labelKeyPattern.source);
    }
    expect(parseLabelFilters([`${"k".repeat(64)}:v`])).toEqual({ ["k".repeat(64)]: "v" });
    expectLabelError([`${"k".repeat(65)}:v`], "longer than 64");
  });

  it("values are at most 256 characters and free of NUL", () => {
    expect(parseLabelFilters([`k:${"v".repeat(256)}`]).k).toHaveLength(maxLabelValueLength);
    expectLabelError([`k:${"v".repeat(257)}`], "longer than 256");
    expectLabelError(["k:a\0b"], "NUL");
  });

  it("at most 50 label filters are allowed", () => {
    const fifty = Array.from({ length: maxLabels }, (_, i) => `k${i}:v`);
    expect(Object.keys(parseLabelFilters(fifty))).toHaveLength(50);
    expectLabelError([...fifty, "k50:v"], "Too many label filters", "50");
  });

  it("keys named like Object.prototype members are ordinary own keys", () => {
    const filters = parseLabelFilters(["constructor:a", "toString:b", "hasOwnProperty:c"]);
    expect(filters).toEqual({ constructor: "a", toString: "b", hasOwnProperty: "c" });
    expect(Object.getPrototypeOf(filters)).toBe(Object.prototype);
    expect(JSON.stringify(filters)).toBe('{"constructor":"a","toString":"b","hasOwnProperty":"c"}');
  });
});

describe("labelsSchema", () => {
  const messages = (input: unknown) => {
    const result = labelsSchema.safeParse(input);
    expect(result.success).toBe(false);
    return result.error!.issues.map((i) => ({ path: i.path, message: i.message }));
  };

  it("accepts valid labels, including the empty object", () => {
    expect(labelsSchema.parse({})).toEqual({});
    expect(labelsSchema.parse({ env: "prod", "a.b/c-d_e": "x:y z" })).toEqual({
      env: "prod",
      "a.b/c-d_e": "x:y z",
    });
  });

  it("names the key whose format is wrong", () => {
    expect(messages({ "x y": "v" })).toEqual([
      { path: ["x y"], message: 'label key "x y" must match ^[a-zA-Z0-9][a-zA-Z0-9._/-]*$' },
    ]);
  });

  it("rejects an own __proto__ key from JSON rather than dropping it", () => {
    expect(messages(JSON.parse('{"__proto__": "x", "ok": "y"}'))).toEqual([
      { path: ["__proto__"], message: expect.stringContaining('"__proto__" must match') },
    ]);
  });

  it("rejects empty and over-long keys and values, and non-string values", () => {
    expect(messages({ "": "v" })[0]?.message).toBe("label key must not be empty");
    expect(messages({ ["k".repeat(65)]: "v" })[0]?.message).toContain("longer than 64");
    expect(messages({ k: "" })).toEqual([
      { path: ["k"], message: 'label "k" value must not be empty' },
    ]);
    expect(messages({ k: "v".repeat(257) })[0]?.message).toContain("longer than 256");
    expect(messages({ k: 1 })[0]?.message).toBe('label "k" value must be a string');
    expect(messages({ k: "a\0b" })[0]?.message).toContain("NUL");
  });

  it("accepts 50 labels and rejects 51", () => {
    const labels = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    expect(labelsSchema.safeParse(labels(50)).success).toBe(true);
    expect(messages(labels(51))).toContainEqual({
      path: [],
      message: "at most 50 labels are allowed (got 51)",
    });
  });

  it("rejects non-objects", () => {
    for (const input of [null, undefined, "x", 1, [], ["a"], new Date()]) {
      expect(labelsSchema.safeParse(input).success).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** Runs fn; returns normally when it returned or threw an ApiError 400, else rethrows. */
function onlyApiError400(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 400) throw err;
    expect(err.validations?.length).toBe(1);
  }
}

/** Strings built from the pieces of the grammar, to reach deep into the parser. */
const grammarish = fc
  .array(
    fc.oneof(
      fc.constantFrom(...searchKeys, "TITLE", "Pr_Status", "foo", "", "_"),
      fc.constantFrom(":", '"', "\\", '\\"', "\\\\", " ", "\t", "\n", "  "),
      fc.constantFrom("true", "FALSE", "1", "0", "2147483648", "open", "https://x.io/a", "\0"),
      fc.string({ unit: "grapheme", maxLength: 5 }),
    ),
    { maxLength: 30 },
  )
  .map((parts) => parts.join(""));

/** Well-formed key:value terms with junk values, to reach every key's value checks. */
const junkTerms = fc
  .array(
    fc.tuple(
      fc.constantFrom(...searchKeys, "Diff_URL", "PR"),
      fc.oneof(
        fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
        fc.constantFrom("http://", "https://[::1", "x:y", "//a", "http://a b", "-1", "1e9", "%zz"),
      ),
      fc.boolean(),
    ),
    { maxLength: 4 },
  )
  .map((terms) =>
    terms
      .map(([key, value, quoted]) =>
        quoted
          ? `${key}:"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`
          : `${key}:${value}`,
      )
      .join(" "),
  );

describe("properties", () => {
  it("parseChatSearch returns or throws an ApiError 400 for any input", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: "binary", maxLength: 300 }),
          fc.string({ unit: "binary-ascii", maxLength: 300 }),
          fc.string({ unit: "grapheme-composite", maxLength: 100 }),
          grammarish,
          junkTerms,
          fc.string({ unit: fc.constantFrom("a", ":", '"', " ", "\\"), maxLength: 3000 }),
        ),
        (q) => onlyApiError400(() => parseChatSearch(q)),
      ),
      { numRuns: 500 },
    );
  });

  const randomCase = (s: string) =>
    fc
      .array(fc.boolean(), { minLength: s.length, maxLength: s.length })
      .map((ups) => [...s].map((c, i) => (ups[i] ? c.toUpperCase() : c)).join(""));

  /** Any code point, but often the ones the grammar cares about (quotes, escapes, separators). */
  const char = fc.oneof(
    fc.constantFrom('"', "\\", ":", " ", "\t", "\n", "'", "a", "Z", "\u00a0"),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  );
  const text = fc
    .oneof(
      fc.string({ unit: char, minLength: 1, maxLength: 40 }),
      fc.string({ unit: "binary", minLength: 1, maxLength: 256 }),
    )
    .filter((s) => !s.includes("\0") && s.length <= 256);

  /** For each key, a value as typed (any case) and what parsing it should give. */
  const termOf: Record<
    (typeof searchKeys)[number],
    fc.Arbitrary<{ typed: string; parsed: unknown }>
  > = {
    title: text.map((s) => ({ typed: s, parsed: s })),
    repo: text.map((s) => ({ typed: s, parsed: s })),
    pr_title: text.map((s) => ({ typed: s, parsed: s })),
    archived: fc
      .boolean()
      .chain((b) => randomCase(String(b)).map((typed) => ({ typed, parsed: b }))),
    has_unread: fc
      .boolean()
      .chain((b) => randomCase(String(b)).map((typed) => ({ typed, parsed: b }))),
    pr: fc.integer({ min: 1, max: 2147483647 }).map((n) => ({ typed: String(n), parsed: n })),
    pr_status: fc
      .constantFrom(...prStatuses)
      .chain((s) => randomCase(s).map((typed) => ({ typed, parsed: s }))),
    diff_url: fc
      .webUrl({ withQueryParameters: true, withFragments: true })
      .filter((u) => u.length <= 256)
      .map((u) => ({ typed: u, parsed: u })),
  };

  const fieldOf = {
    title: "title",
    archived: "archived",
    has_unread: "hasUnread",
    pr: "pr",
    repo: "repo",
    pr_title: "prTitle",
    pr_status: "prStatus",
    diff_url: "diffUrl",
  } as const satisfies Record<(typeof searchKeys)[number], keyof ChatSearch>;

  const quote = (v: string) => `"${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;

  const termList = fc
    .shuffledSubarray([...searchKeys])
    .chain((keys) =>
      fc.tuple(
        ...keys.map((key) =>
          fc.record({
            key: randomCase(key),
            value: termOf[key],
            forceQuotes: fc.boolean(),
            gap: fc.constantFrom(" ", "  ", "\t", "\n", " \r\n "),
          }),
        ),
      ),
    )
    .map((terms) =>
      terms.map((t) => ({
        ...t,
        canonical: t.key.toLowerCase() as (typeof searchKeys)[number],
      })),
    );

  it("any list of valid terms round-trips through rendering and parsing", () => {
    fc.assert(
      fc.property(termList, fc.constantFrom("", " ", "\n\t"), (terms, edge) => {
        const q =
          edge +
          terms
            .map((t) => {
              const v = t.value.typed;
              const needsQuotes = /[\s:"\\]/.test(v) || v.startsWith('"');
              return `${t.key}:${needsQuotes || t.forceQuotes ? quote(v) : v}${t.gap}`;
            })
            .join("") +
          edge;
        fc.pre(q.length <= 2048);
        const expected: Record<string, unknown> = { archived: false };
        for (const t of terms) expected[fieldOf[t.canonical]] = t.value.parsed;
        expect(parseChatSearch(q)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("parseLabelFilters returns or throws an ApiError 400 for any input", () => {
    const filter = fc.oneof(
      fc.string({ unit: "binary", maxLength: 80 }),
      fc
        .tuple(
          fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,70}$/),
          fc.constantFrom(":", "", "::"),
          fc.string({ unit: "binary", maxLength: 300 }),
        )
        .map((parts) => parts.join("")),
      fc.constantFrom("a:b", "a:c", "__proto__:x", "constructor:y", ":", "a:\0"),
    );
    fc.assert(
      fc.property(fc.array(filter, { maxLength: 60 }), (values) =>
        onlyApiError400(() => {
          const out = parseLabelFilters(values);
          for (const [key, value] of Object.entries(out)) {
            expect(labelKeyPattern.test(key)).toBe(true);
            expect(value.length).toBeGreaterThan(0);
            expect(values).toContain(`${key}:${value}`);
          }
          // What passes as filters also passes as a chat's labels.
          expect(labelsSchema.safeParse(out).success).toBe(true);
        }),
      ),
      { numRuns: 500 },
    );
  });

  it("labelsSchema.safeParse never throws", () => {
    const labels = fc.oneof(
      fc.dictionary(fc.string({ unit: "binary", maxLength: 70 }), fc.string({ unit: "binary" }), {
        maxKeys: 60,
      }),
      fc.dictionary(
        fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,63}$/),
        fc.string({ minLength: 1, maxLength: 256 }),
        { maxKeys: 55 },
      ),
      fc.jsonValue(),
      fc.anything(),
    );
    fc.assert(
      fc.property(labels, (input) => {
        const result = labelsSchema.safeParse(input);
        if (result.success) {
          expect(Object.keys(result.data).length).toBeLessThanOrEqual(maxLabels);
        }
      }),
      { numRuns: 500 },
    );
  });
});
