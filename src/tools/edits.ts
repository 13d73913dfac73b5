/*
 * edit_files' rule (docs/api.md "Workspace tools"), shared by the agent (files of the workspace)
 * and the runner (the chat's plan file in plan mode): each edit's `old` must occur exactly once in
 * the text as the earlier edits left it, else the call fails and nothing is changed.
 */

export interface Edit {
  old: string;
  new: string;
}

export type EditOutcome = { ok: true; text: string } | { ok: false; error: string };

function occurrences(text: string, needle: string, stopAt: number): number {
  let n = 0;
  for (let at = text.indexOf(needle); at >= 0 && n < stopAt; at = text.indexOf(needle, at + 1)) n++;
  return n;
}

/** Applies `edits` in order to `text`; `label` names the file in errors (and `index` the edit). */
export function applyEdits(
  text: string,
  edits: { edit: Edit; index: number }[],
  label: string,
): EditOutcome {
  let out = text;
  for (const { edit, index } of edits) {
    const found = occurrences(out, edit.old, 2);
    if (found !== 1) {
      return {
        ok: false,
        error:
          found === 0
            ? `edit ${index + 1} (${label}): old text not found; nothing was changed`
            : `edit ${index + 1} (${label}): old text occurs more than once; give more context so it is unique; nothing was changed`,
      };
    }
    const at = out.indexOf(edit.old);
    out = out.slice(0, at) + edit.new + out.slice(at + edit.old.length);
  }
  return { ok: true, text: out };
}
