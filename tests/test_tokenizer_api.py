"""The tokenizer over HTTP: lmserve's /api/v1 routes, and the root routes in vLLM's
shapes that lm-evaluation-harness's remote tokenizer reads."""

import httpx
import pytest


def test_native_tokenize_and_detokenize(server):
    r = httpx.post(server.origin + "/api/v1/tokenize", timeout=10,
                   json={"model": "m", "text": "Hello world", "with_pieces": True}).json()
    assert r["pieces"] == ["Hello", " world"] and len(r["tokens"]) == 2
    back = httpx.post(server.origin + "/api/v1/detokenize", timeout=10,
                      json={"model": "m", "tokens": r["tokens"]}).json()
    assert back["text"] == "Hello world" and back["model"] == r["model"]


def test_remote_tokenizer_routes_as_lm_eval_reads_them(server):
    info = httpx.get(server.origin + "/tokenizer_info", timeout=10).json()
    assert info["eos_token"] == "<|im_end|>"  # what SmolLM2's GGUF names as its end token
    assert "<|im_start|>" in info["chat_template"]
    assert info["model_max_length"] == server.status()["models"][0]["context_length"]

    r = httpx.post(server.origin + "/tokenize", timeout=10,
                   json={"prompt": "test <|im_end|>", "add_special_tokens": False}).json()
    assert r["count"] == len(r["tokens"]) == 3  # "test", " ", and the end token whole
    assert isinstance(r["max_model_len"], int)
    back = httpx.post(server.origin + "/detokenize", timeout=10,
                      json={"tokens": r["tokens"][:1]}).json()
    assert back == {"prompt": "test"}


@pytest.mark.parametrize(("path", "body"), [
    ("/detokenize", {"tokens": [10**9]}),
    ("/tokenize", {"text": "the field is called prompt"}),
    ("/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]}),
    ("/tokenize", {"messages": []}),  # found by the fuzz: it was a 500
])
def test_bad_tokenizer_requests_are_400(server, path, body):
    r = httpx.post(server.origin + path, json=body, timeout=10)
    assert r.status_code == 400 and "error" in r.json()


def test_detokenize_keeps_special_tokens_as_vllm_does(server):
    r = httpx.post(server.origin + "/tokenize", timeout=10,
                   json={"prompt": "<|im_start|>hello<|im_end|>", "return_token_strs": True,
                         "add_special_tokens": False}).json()
    assert r["token_strs"][0] == "<|im_start|>" and r["token_strs"][-1] == "<|im_end|>"
    back = httpx.post(server.origin + "/detokenize", timeout=10,
                      json={"tokens": r["tokens"]}).json()
    assert back == {"prompt": "<|im_start|>hello<|im_end|>"}


def test_tokenize_chat_messages_as_vllm_does(server):
    messages = [{"role": "user", "content": "Hi there"}]
    chat = httpx.post(server.origin + "/tokenize", timeout=10,
                      json={"messages": messages, "return_token_strs": True}).json()
    text = "".join(chat["token_strs"])
    assert text.startswith("<|im_start|>") and "Hi there" in text
    assert text.endswith("<|im_start|>assistant\n")  # the generation prompt, by default
    bare = httpx.post(server.origin + "/tokenize", timeout=10,
                      json={"messages": messages, "add_generation_prompt": False}).json()
    assert bare["tokens"] == chat["tokens"][:bare["count"]] and bare["count"] < chat["count"]
    go_on = httpx.post(server.origin + "/tokenize", timeout=10, json={
        "messages": [*messages, {"role": "assistant", "content": "Hello, I am"}],
        "continue_final_message": True, "add_generation_prompt": False,
        "return_token_strs": True}).json()
    assert "".join(go_on["token_strs"]).endswith("Hello, I am")
