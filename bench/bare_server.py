"""The ceiling: a bare aiohttp server answering WeChat's webhook POST with a fixed passive reply.

No signature check, no XML parsing, no database: it reads the body and returns the same text reply
every time, so it measures what aiohttp (and the load generator) can do on this machine. Served the
way ``yezhu run`` serves (``web.run_app``, no access log, the default asyncio loop)::

    taskset -c 0 .venv/bin/python bench/bare_server.py --port 18090

``bench/webhook_load.py --target bare`` starts it itself. ``GET /healthz`` answers ``ok``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

# A typical passive reply (a knowledge-base answer of about 300 characters), always to the same openid.
FIXED_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA["
    + "物业费可以通过本公众号菜单「生活服务 → 物业缴费」在线交纳，也可以到 1 栋大堂客服中心柜台交纳"
    "（工作日 9:00–17:00）。交费后可在公众号「缴费记录」查看明细、申请电子发票。"
    * 3
    + "]]></Content>\n<FromUserName><![CDATA[gh_0123456789ab]]></FromUserName>\n"
    "<ToUserName><![CDATA[oBARE]]></ToUserName>\n<CreateTime>1700000000</CreateTime>\n</xml>"
).encode()


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=FIXED_REPLY, content_type="application/xml", charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/wechat/{account}", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
