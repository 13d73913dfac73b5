import { fuzzFile } from "../setup/fuzz.ts";

// The operations of fuzzGroup "streams_files" (test/setup/fuzz.ts says what each property checks).
await fuzzFile("streams_files");
