"""The peer: the WeChat bot a team would write by hand instead of deploying Yezhu (issue 16).

WeRoBot (signature check, XML parse, passive reply) on gunicorn with one sync worker, SQLAlchemy's ORM
on a SQLite file (WAL, as Yezhu's embedded mode). Per text message it does the minimum of Yezhu's
work: store the inbound message (the MsgId is unique: a retried delivery is answered ``success``),
pick a reply by keyword, store the reply, answer passively -- the inbound message and its reply in one
transaction. No NLU, no dialogue state, no tickets. ``bench/webhook_load.py --target peer`` starts it::

    PEER_DB=/tmp/peer.db PEER_TOKEN=yezhubenchtoken taskset -c 0 .venv/bin/gunicorn -w 1 -k sync \\
        -b 127.0.0.1:18182 bench.peer_werobot:app

Not a runtime dependency of Yezhu: ``pip install -e .[bench]`` installs WeRoBot and gunicorn.
"""

from __future__ import annotations

import datetime as dt
import os

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from werobot import WeRoBot

DB_PATH = os.environ.get("PEER_DB", "/tmp/yezhu-peer.db")
TOKEN = os.environ.get("PEER_TOKEN", "yezhubenchtoken")
APP_ID = os.environ.get("PEER_APP_ID", "wxbench0123456789")

# The keyword replies (what the demo knowledge base answers to the bench's texts, shortened).
KEYWORDS = [
    ("物业费", "物业费可以在本公众号「生活服务 → 物业缴费」在线交纳，也可以到 1 栋大堂客服中心交纳。"),
    ("停车", "停车月卡地上 300 元/月、地下 450 元/月，请到客服中心办理。"),
    ("装修", "装修前请到客服中心办理装修申请，带身份证、房产证和装修方案，审核约 3 个工作日。"),
    ("门禁", "门禁卡补办请带身份证到客服中心，工本费 20 元，当场可取。"),
    ("几点", "客服中心工作时间：每天 8:30–18:00，节假日照常。"),
    ("维修基金", "维修基金可以在市住房维修资金网站用身份证查询。"),
    ("快递", "快递可以放在小区门口的快递柜，大件请放物业服务中心代收。"),
    ("狗", "小区可以养狗，请办理犬证、牵绳出行并及时清理。"),
    ("水电", "水电燃气开户请带房产证和身份证到客服中心，我们会协助办理。"),
    ("房产证", "办理房产证请准备身份证、购房合同、发票和契税完税证明。"),
    ("谢谢", "不客气，祝您生活愉快！"),
    ("你好", "您好，我是小区客服，请问有什么可以帮您？"),
]
FALLBACK = "您好，您的消息已收到，客服会尽快回复您。"


class Base(DeclarativeBase):
    pass


class Message(Base):
    __tablename__ = "message"
    id: Mapped[int] = mapped_column(primary_key=True)
    msg_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    openid: Mapped[str] = mapped_column(sa.String(64), index=True)
    direction: Mapped[str] = mapped_column(sa.String(3))
    text: Mapped[str] = mapped_column(sa.Text)
    reply_to: Mapped[int | None] = mapped_column(sa.ForeignKey("message.id"))
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime)


engine = sa.create_engine(f"sqlite:///{DB_PATH}")
JOURNAL = os.environ.get("PEER_JOURNAL", "wal")
"""``wal``: WAL and ``synchronous=NORMAL``, the durability Yezhu's embedded mode has (the default);
``default``: SQLite's own defaults (a rollback journal, an fsync per commit), what ``create_engine``
alone gives."""


@sa.event.listens_for(engine, "connect")
def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
    if JOURNAL == "wal":
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


Base.metadata.create_all(engine)

robot = WeRoBot(token=TOKEN, app_id=APP_ID, enable_session=False)


@robot.text
def answer(message, session=None):  # type: ignore[no-untyped-def]
    reply = next((text for word, text in KEYWORDS if word in message.content), FALLBACK)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with Session(engine) as s:
        inbound = Message(
            msg_id=str(message.message_id),
            openid=message.source,
            direction="in",
            text=message.content,
            at=now,
        )
        s.add(inbound)
        try:
            s.flush()
        except IntegrityError:
            return "success"  # a retried delivery: stored and answered already
        s.add(Message(openid=message.source, direction="out", text=reply, reply_to=inbound.id, at=now))
        s.commit()
    return reply


def app(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return robot.wsgi(environ, start_response)
