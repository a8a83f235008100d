// Client code for the live base URL and model: each as its official SDK documents it.
export const snippets = {
  curl: {
    label: "curl",
    code: (url, model) => `curl ${url}/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
  },
  python: {
    label: "Python openai",
    code: (url, model) => `from openai import OpenAI

client = OpenAI(base_url="${url}", api_key="lmserve")
reply = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Hello!"}],
)
print(reply.choices[0].message.content)`,
  },
  node: {
    label: "Node openai",
    code: (url, model) => `import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${url}", apiKey: "lmserve" });
const reply = await client.chat.completions.create({
  model: "${model}",
  messages: [{ role: "user", content: "Hello!" }],
});
console.log(reply.choices[0].message.content);`,
  },
  langchain: {
    label: "LangChain",
    code: (url, model) => `from langchain_openai import ChatOpenAI

llm = ChatOpenAI(base_url="${url}", api_key="lmserve", model="${model}")
print(llm.invoke("Hello!").content)`,
  },
  anthropic: {
    label: "Anthropic SDK",
    code: (url, model) => `import anthropic

client = anthropic.Anthropic(base_url="${url.replace(/\/v1$/, "")}", api_key="lmserve")
reply = client.messages.create(
    model="${model}", max_tokens=256,
    messages=[{"role": "user", "content": "Hello!"}],
)
print(reply.content[0].text)`,
  },
};
