import { fuzzFile } from "../setup/fuzz.ts";

// The operations of fuzzGroup "users_orgs" (test/setup/fuzz.ts says what each property checks).
await fuzzFile("users_orgs");
