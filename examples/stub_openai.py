"""A small OpenAI-compatible chat model server for trying things without network or an API key: a
stand-in for the OpenAI API, answering ``POST /v1/chat/completions`` (plain and streaming) the way the
``openai`` SDK expects. It echoes the last message. Models named ``err-429`` and ``err-500`` fail with
that status, so failed calls can be seen too.

    python examples/stub_openai.py --port 8100      # then base_url="http://127.0.0.1:8100/v1"
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
FAILURES = {"err-429": (429, "Rate limit reached for stub", "requests"), "err-500": (500, "stub internal error", "server_error")}

app = FastAPI(title="stub OpenAI chat completions", telemetry={"tracing": False, "metrics": False, "logs": False})


@app.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    model = body.get("model", "")
    if model in FAILURES:
        status, message, kind = FAILURES[model]
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status_code=status)
    text = f"echo: {body['messages'][-1]['content']}"
    common = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": model,
              "system_fingerprint": "fp_stub"}
    if not body.get("stream"):
        return {**common, "object": "chat.completion", "usage": USAGE, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "logprobs": None,
             "finish_reason": "stop"}]}

    def chunk(delta, finish=None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**common, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"

    async def words():
        yield chunk({"role": "assistant", "content": ""})
        for word in text.split(" "):
            yield chunk({"content": word + " "})
        yield chunk({}, finish="stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**common, 'object': 'chat.completion.chunk', 'choices': [], 'usage': USAGE})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(words(), media_type="text/event-stream")


class StubServer:
    """The stub under uvicorn in a thread, on a free loopback port: ``with StubServer() as stub: stub.base_url``."""

    def __init__(self, port: int = 0) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="stub-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the stub model server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8100)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="info")
