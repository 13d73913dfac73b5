import { fuzzFile } from "../setup/fuzz.ts";

// The operations of fuzzGroup "chats_writes" (test/setup/fuzz.ts says what each property checks).
await fuzzFile("chats_writes");
