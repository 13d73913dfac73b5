import { fuzzFile } from "../setup/fuzz.ts";

// The operations of fuzzGroup "agent" (test/setup/fuzz.ts says what each property checks).
await fuzzFile("agent");
