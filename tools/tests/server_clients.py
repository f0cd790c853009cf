"""Drives `mlx-vlm serve` with the official `openai` and `anthropic` Python
clients (pinned in vendor/server-clients-requirements.txt) and prints one
JSON object of what they received; tools/tests/server.rs checks it against
`mlx-vlm generate`.

Usage: server_clients.py BASE_URL MODEL API_KEY PROMPT MAX_TOKENS IMAGE_PNG_BASE64
(the image goes with the prompt "What is this?" in the image requests).
"""

import json
import sys

import anthropic
import openai


def main():
    base_url, model, api_key, prompt, max_tokens, image = sys.argv[1:7]
    max_tokens = int(max_tokens)
    messages = [{"role": "user", "content": prompt}]
    out = {}

    client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key)
    chat = client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0
    )
    out["openai_chat"] = {
        "text": chat.choices[0].message.content,
        "finish_reason": chat.choices[0].finish_reason,
        "object": chat.object,
        "usage": [chat.usage.prompt_tokens, chat.usage.completion_tokens],
    }

    text, finish, usage, chunks = "", None, None, 0
    for chunk in client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        chunks += 1
        if chunk.usage is not None:
            usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    out["openai_stream"] = {
        "text": text,
        "finish_reason": finish,
        "usage": usage,
        "chunks": chunks,
    }

    response = client.responses.create(
        model=model, input=prompt, max_output_tokens=max_tokens, temperature=0
    )
    out["openai_responses"] = {"text": response.output_text, "status": response.status}

    text, kinds, status = "", [], None
    for event in client.responses.create(
        model=model, input=prompt, max_output_tokens=max_tokens, stream=True
    ):
        if event.type not in kinds:
            kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type in ("response.completed", "response.incomplete"):
            status = event.response.status
    out["openai_responses_stream"] = {"text": text, "status": status, "events": kinds}

    try:
        client.chat.completions.create(model="not-served", messages=messages)
        out["openai_404"] = None
    except openai.NotFoundError as e:
        out["openai_404"] = e.status_code

    bad = openai.OpenAI(base_url=base_url + "/v1", api_key="wrong")
    try:
        bad.models.list()
        out["openai_401"] = None
    except openai.AuthenticationError as e:
        out["openai_401"] = e.status_code

    out["openai_models"] = [m.id for m in client.models.list()]

    claude = anthropic.Anthropic(base_url=base_url, api_key=api_key)
    # The server's default temperature is 0 (greedy), as Python's.
    message = claude.messages.create(
        model=model, messages=messages, max_tokens=max_tokens
    )
    out["anthropic"] = {
        "text": "".join(b.text for b in message.content if b.type == "text"),
        "stop_reason": message.stop_reason,
        "usage": [message.usage.input_tokens, message.usage.output_tokens],
    }

    with_image = claude.messages.create(
        model=model,
        max_tokens=max_tokens,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": image,
                        },
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    out["anthropic_image"] = "".join(
        b.text for b in with_image.content if b.type == "text"
    )

    events = []
    with claude.messages.stream(
        model=model, messages=messages, max_tokens=max_tokens
    ) as stream:
        for event in stream:
            if event.type not in events:
                events.append(event.type)
        final = stream.get_final_message()
    out["anthropic_stream"] = {
        "text": "".join(b.text for b in final.content if b.type == "text"),
        "stop_reason": final.stop_reason,
        "events": events,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
