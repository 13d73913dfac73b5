import { type ToolSet, tool } from "ai";
import { z } from "zod";

/*
 * Plan mode (docs/api.md "Plan mode"): while a chat's plan_mode is "plan", its turns offer the
 * model these tools, and with an agent online the exploring workspace tools and the plan file's
 * write_file/edit_files (src/runner/workspace_tools.ts), never the client's tools or anything that
 * changes the workspace. ask_user_question is answered by the client like any client tool (the
 * chat goes requires_action); propose_plan is answered by the runner, which saves the plan as the
 * chat file plan.md (chat_run_save_tool_step) and ends the turn.
 */

export const askUserQuestion = "ask_user_question";
export const proposePlan = "propose_plan";

/** Far above any plan worth reading; keeps the file well inside chat_files' 10 MiB limit. */
const maxPlanLength = 1_000_000;

/** PostgreSQL text cannot hold NUL: refused here, as a schema error the model can correct. */
const noNul = (s: string) => !s.includes("\u0000");

const proposePlanInput = z.strictObject({
  title: z.string().trim().min(1).max(200).refine(noNul, "must not contain NUL characters"),
  plan_markdown: z
    .string()
    .min(1)
    .max(maxPlanLength)
    .refine(noNul, "must not contain NUL characters"),
});

export type ProposedPlan = z.infer<typeof proposePlanInput>;

export function planTools(): ToolSet {
  return {
    [askUserQuestion]: tool({
      description:
        "Ask the user a question and wait for the answer. Give options for a multiple-choice question.",
      inputSchema: z.strictObject({
        question: z.string().trim().min(1).max(4000),
        options: z.array(z.string().trim().min(1).max(500)).min(2).max(20).optional(),
      }),
    }),
    [proposePlan]: tool({
      description:
        "Propose the plan: a short title and the plan in Markdown. It is saved as the chat's plan.md, shown to the user, and ends your turn.",
      inputSchema: proposePlanInput,
    }),
  };
}

/** The file's content: the title as its heading, then the plan. */
export function planFileMarkdown(plan: ProposedPlan): string {
  return `# ${plan.title}\n\n${plan.plan_markdown.trim()}\n`;
}

/** The arguments of a valid propose_plan call (the SDK validated them against the schema). */
export function proposedPlanOf(args: unknown): ProposedPlan {
  return proposePlanInput.parse(args);
}
