"""The Rasa backend against a local aiohttp server speaking Rasa's ``/model/parse`` format, and the
fallback to the own model when that server is down, slow or broken."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nlu.pipeline import Interpreter, from_env, load_interpreter
from nlu.rasa import RasaClient

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def rasa_answer(text: str) -> dict[str, Any]:
    # Rasa 3.x's documented answer shape (HTTP API, POST /model/parse).
    return {
        "text": text,
        "intent": {"name": "complaint", "confidence": 0.8731},
        "entities": [{"entity": "house", "start": 0, "end": 7, "value": "3栋2单元501", "confidence_entity": 0.99,
                      "extractor": "DIETClassifier"}],
        "intent_ranking": [{"name": "complaint", "confidence": 0.8731}, {"name": "repair", "confidence": 0.1},
                           {"name": "nlu_fallback", "confidence": 0.0269}],
        "text_tokens": [[0, 1]],
    }


@pytest.fixture
def received() -> list[dict[str, Any]]:
    return []


@pytest.fixture
async def rasa_server(aiohttp_server: ServerFactory, received: list[dict[str, Any]]) -> TestServer:
    async def parse(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        return web.json_response(rasa_answer(body["text"]))

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    return await aiohttp_server(app)


def rasa_interpreter(url: str, timeout: float = 1.0) -> Interpreter:
    return Interpreter(load_interpreter().classifier, backend="rasa", rasa=RasaClient(url, timeout=timeout))


async def test_rasa_answer_is_used(rasa_server: TestServer, received: list[dict[str, Any]]) -> None:
    interpreter = rasa_interpreter(str(rasa_server.make_url("/")))
    text = "3栋2单元501楼上天天吵，明天下午我去物业"
    result = await interpreter.aparse(text)
    assert received == [{"text": text}]
    assert result.backend == "rasa"
    assert (result.intent, result.confidence) == ("complaint", 0.8731)
    assert result.intent_ranking[0] == ("complaint", 0.8731)
    assert ("other", 0.0269) in result.intent_ranking  # nlu_fallback → other
    house = result.entity("house")
    assert house is not None and house.extra["extractor"] == "DIETClassifier"
    # Rasa returned no time: Yezhu's rule entity fills it in, with offsets into the original.
    time_entity = result.entity("time")
    assert time_entity is not None and text[time_entity.start:time_entity.end] == "明天下午"
    assert [e.entity for e in result.entities].count("house") == 1
    assert result.to_dict()["intent"] == "complaint"


async def test_load_interpreter_and_from_env_choose_rasa(rasa_server: TestServer) -> None:
    url = str(rasa_server.make_url("/")).rstrip("/")
    interpreter = from_env({"YEZHU_NLU_BACKEND": "rasa", "YEZHU_RASA_URL": url})
    assert interpreter is load_interpreter("rasa", url)
    assert interpreter.classifier is load_interpreter().classifier
    assert (await interpreter.aparse("随便说点什么")).backend == "rasa"
    assert from_env({}).backend == "yezhu"
    with pytest.raises(ValueError):
        load_interpreter("rasa", None)
    with pytest.raises(ValueError):
        load_interpreter("luis")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fallback_when_server_is_down(caplog: pytest.LogCaptureFixture) -> None:
    interpreter = rasa_interpreter(f"http://127.0.0.1:{free_port()}")
    text = "卫生间漏水了"
    with caplog.at_level(logging.WARNING, logger="nlu.pipeline"):
        result = await interpreter.aparse(text)
    assert result.backend == "yezhu"
    own = interpreter.parse(text)
    assert (result.intent, result.confidence) == (own.intent, own.confidence) == ("repair", own.confidence)
    assert any("Rasa NLU server unavailable" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


@pytest.mark.parametrize("failure", ["status", "garbage", "no_intent", "slow"])
async def test_fallback_when_server_errors(aiohttp_server: ServerFactory, caplog: pytest.LogCaptureFixture,
                                           failure: str) -> None:
    async def parse(request: web.Request) -> web.Response:
        if failure == "status":
            return web.json_response({"error": "model not loaded"}, status=500)
        if failure == "garbage":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        if failure == "no_intent":
            return web.json_response({"text": "x", "intent": None, "entities": []})
        await asyncio.sleep(2)
        return web.json_response(rasa_answer("x"))

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    server = await aiohttp_server(app)
    interpreter = rasa_interpreter(str(server.make_url("/")), timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="nlu.pipeline"):
        result = await interpreter.aparse("我要投诉保安")
    assert (result.backend, result.intent) == ("yezhu", "complaint")
    assert any("Rasa NLU server unavailable" in r.getMessage() for r in caplog.records)


async def test_own_backend_aparse_wraps_parse() -> None:
    interpreter = load_interpreter()
    assert (await interpreter.aparse("转人工")).intent == interpreter.parse("转人工").intent == "human"


async def test_rasa_topic_entity_becomes_the_topic(aiohttp_server: ServerFactory) -> None:
    async def parse(request: web.Request) -> web.Response:
        body = await request.json()
        answer = rasa_answer(body["text"])
        answer["entities"].append({"entity": "topic", "value": "handover", "start": 0, "end": 2,
                                   "extractor": "DIETClassifier"})
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    server = await aiohttp_server(app)
    result = await rasa_interpreter(str(server.make_url("/"))).aparse("交房一拖再拖")
    assert result.backend == "rasa" and result.topic == "handover"
    assert "topic" not in {e.entity for e in result.entities}
    assert result.to_dict()["topic"] == "handover"


async def test_own_topic_when_rasa_names_none(rasa_server: TestServer) -> None:
    result = await rasa_interpreter(str(rasa_server.make_url("/"))).aparse("3栋2单元501的房产证什么时候能办好")
    assert result.backend == "rasa" and result.topic == "certificate"
