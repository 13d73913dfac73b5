import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { OpenAPIV3_1 } from "openapi-types";
import { pino } from "pino";
import { createApp } from "../../src/server/app.ts";
import { openApiDocument } from "../../src/server/openapi.ts";

/*
 * Checks responses against the OpenAPI document (src/server/openapi.ts), so a response the suite
 * receives that the document does not describe fails the test that received it. testApp().call
 * runs it on every response (test/setup/app.ts).
 */

type Operation = OpenAPIV3_1.OperationObject;

interface Route {
  pattern: RegExp;
  /** Path parameters: a literal segment wins over a parameter ("/chats/watch" over "/{chat}"). */
  params: number;
  path: string;
  operations: Record<string, Operation>;
}

let loaded: Promise<{ doc: OpenAPIV3_1.Document; routes: Route[] }> | undefined;

/** The document of the app as the server builds it (no database: it only walks the routes). */
export function testDocument() {
  loaded ??= (async () => {
    const app = createApp({ db: {} as never, logger: pino({ level: "silent" }) } as never);
    const doc = await openApiDocument(app);
    const routes: Route[] = Object.entries(doc.paths ?? {}).map(([path, item]) => {
      const source = path
        .split("/")
        .map((seg) => (/^\{\w+\}$/.test(seg) ? "[^/]+" : seg.replace(/[.*+?^$()|[\]\\]/g, "\\$&")))
        .join("/");
      return {
        pattern: new RegExp(`^${source}$`),
        params: (path.match(/\{/g) ?? []).length,
        path,
        operations: item as Record<string, Operation>,
      };
    });
    routes.sort((a, b) => a.params - b.params);
    return { doc, routes };
  })();
  return loaded;
}

/**
 * Whether the operation declares its responses (operation() in its route). Without, the
 * generator still lists it, with the 400 of its validators and an empty 200.
 */
export function described(op: Operation): boolean {
  return Object.entries(op.responses ?? {}).some(
    ([status, r]) => status !== "400" && "description" in (r as object),
  );
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
const compiled = new Map<string, ValidateFunction>();

/**
 * Throws when `status` is not a documented answer of the operation at `method path`, or when its
 * JSON body does not match the documented schema.
 */
export async function checkResponse(
  method: string,
  url: string,
  status: number,
  contentType: string | null,
  body: unknown,
): Promise<void> {
  const { doc, routes } = await testDocument();
  const path = new URL(url, "http://x").pathname;
  const route = routes.find((r) => r.pattern.test(path));
  const op = route?.operations[method.toLowerCase()];
  // A path or method the app has no route for: its 404 is the app's, not an operation's.
  if (!route || !op) return;
  if (!described(op)) throw new Error(`${method} ${route.path} declares no responses`);
  const responses = op.responses ?? {};
  // 500 is a fault, never an answer: the test that got one fails on its own status assertion.
  if (status >= 500) return;
  const response = responses[String(status)] as OpenAPIV3_1.ResponseObject | undefined;
  if (!response) {
    throw new Error(
      `${method} ${route.path} answered ${status}, which the OpenAPI document does not list (${Object.keys(responses).join(", ")}): ${JSON.stringify(body)?.slice(0, 300)}`,
    );
  }
  const schema = response.content?.["application/json"]?.schema;
  if (!schema) return;
  if (!contentType?.startsWith("application/json")) {
    throw new Error(`${method} ${route.path} ${status}: documented as JSON, got ${contentType}`);
  }
  const key = `${method} ${route.path} ${status}`;
  let validate = compiled.get(key);
  if (!validate) {
    validate = ajv.compile({ ...schema, components: doc.components });
    compiled.set(key, validate);
  }
  if (!validate(body)) {
    throw new Error(
      `${key}: the body does not match the OpenAPI document: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)?.slice(0, 500)}`,
    );
  }
}

/**
 * A check of the events of the stream at `url` against its documented event schema (the
 * text/event-stream schema of GET, one event's): returns why an event does not match, or
 * undefined. Null when the path is no documented stream (its events are another protocol's).
 */
export async function streamEventChecker(
  url: string,
): Promise<((ev: { event: string; data: string; id: string }) => string | undefined) | null> {
  const { doc, routes } = await testDocument();
  const path = new URL(url, "http://x").pathname;
  const route = routes.find((r) => r.pattern.test(path));
  const response = route?.operations.get?.responses?.["200"] as
    | OpenAPIV3_1.ResponseObject
    | undefined;
  const schema = response?.content?.["text/event-stream"]?.schema as
    | OpenAPIV3_1.SchemaObject
    | undefined;
  // The AI SDK's stream is described as text: its chunks are that SDK's to define.
  if (!schema || schema.type === "string") return null;
  // One schema per event name, so a mismatch names what is wrong with that event only.
  const deref = (s: OpenAPIV3_1.SchemaObject | OpenAPIV3_1.ReferenceObject) =>
    ("$ref" in s
      ? doc.components?.schemas?.[s.$ref.replace("#/components/schemas/", "")]
      : s) as OpenAPIV3_1.SchemaObject;
  const top = deref(schema);
  const variants = (top.anyOf ?? [top]).map(deref);
  const byEvent = new Map<string, ValidateFunction>();
  for (const variant of variants) {
    const event = variant.properties?.event && deref(variant.properties.event);
    const names = event?.const !== undefined ? [String(event.const)] : (event?.enum ?? []);
    const validate = ajv.compile({ ...variant, components: doc.components });
    for (const name of names) byEvent.set(String(name), validate);
  }
  return (ev) => {
    let data: unknown;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return `${route!.path}: event ${ev.event} has data that is not JSON: ${ev.data.slice(0, 200)}`;
    }
    const check = byEvent.get(ev.event);
    if (!check) return `${route!.path}: event ${ev.event} is not in the OpenAPI document`;
    const item = { event: ev.event, data, ...(ev.id ? { id: ev.id } : {}) };
    if (check(item)) return undefined;
    return `${route!.path}: event ${ev.event} does not match the OpenAPI document: ${ajv.errorsText(check.errors)}\n${ev.data.slice(0, 500)}`;
  };
}
