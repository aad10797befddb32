// Spawns research-mcp over stdio with the official TypeScript SDK client; lists tools, prompts, resources and
// resource templates, gets the first prompt, reads a resource, completes a paper id, sets a log level, calls
// lab_info and read_file, and prints one JSON object for the Python test to check.
// Usage: node client.mjs <workspace> <command> [args...]   (the server is `<command> [args...] serve --workspace <workspace>`)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [workspace, command, ...args] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command, args: [...args, "serve", "--workspace", workspace], env: process.env, stderr: "pipe",
});
const client = new Client({ name: "ts-sdk-test", version: "1.0.0" });
await client.connect(transport);
const attempt = async (call) => {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return { ok: false, error: String(error?.message ?? error) };
  }
};
const tools = await client.listTools();
const prompts = await client.listPrompts();
const resources = await client.listResources();
const templates = await client.listResourceTemplates();
const names = prompts.prompts.map((p) => p.name);
const prompt = names.includes("try_topic")  // the test family's prompt, else a real recipe
  ? await client.getPrompt({ name: "try_topic", arguments: { topic: "dropout", seeds: "2" } })
  : names.includes("review") ? await client.getPrompt({ name: "review", arguments: { main: "paper/main.tex" } }) : null;
const note = await attempt(() => client.readResource({ uri: "note://plan" }));
const paper = await client.readResource({ uri: "paper://arXiv%3A1706.03762" });
const completed = await client.complete({
  ref: { type: "ref/resource", uri: "paper://{paper_id}" }, argument: { name: "paper_id", value: "arXiv:17" },
});
const logLevel = await attempt(() => client.setLoggingLevel("debug"));
const lab = await client.callTool({ name: "lab_info", arguments: {} });
const read = await client.callTool({ name: "read_file", arguments: { path: "hello.txt" } });
const escape = await client.callTool({ name: "read_file", arguments: { path: "../../etc/passwd" } });
process.stdout.write(JSON.stringify({
  server: client.getServerVersion(),
  capabilities: client.getServerCapabilities(),
  tools: tools.tools.map((t) => ({ name: t.name, hasOutputSchema: Boolean(t.outputSchema), readOnly: t.annotations?.readOnlyHint ?? null })),
  prompts: prompts.prompts.map((p) => p.name),
  prompt: prompt?.messages?.[0]?.content?.text ?? null,
  resources: resources.resources.map((r) => ({ uri: r.uri, mimeType: r.mimeType ?? null })),
  templates: templates.resourceTemplates.map((t) => t.uriTemplate),
  note: note.ok ? note.value.contents[0].text : note.error,
  paper: JSON.parse(paper.contents[0].text),
  completed: completed.completion.values,
  logLevel,
  lab: lab.structuredContent,
  read: read.structuredContent,
  escape: { isError: escape.isError ?? false, text: escape.content?.[0]?.text ?? "" },
}) + "\n");
await client.close();
