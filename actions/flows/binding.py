"""Binding (绑定) and choosing a house: the two forms other flows borrow before personal business.

``require_binding`` parks the asking flow in ``state["resume"]`` and starts ``bind_phone``; once the
code checks out (and, for an owner of several homes, a house is chosen) the parked flow's ``resume``
runs. Every reply here is the same whether or not the phone is registered (actions/binding.py).
"""

from __future__ import annotations

import re
from typing import Any

from actions import binding
from actions.flows.base import Flow, drop_form, new_form
from actions.flows.context import Ctx, house_matches, house_text, mask_phone
from bot.store.models import House

CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
RESEND = re.compile(r"重新|没收到|没有收到|收不到|再发|重发|没来|没到")

ASK_PHONE = ("为保护您的个人信息，查询或办理与房屋相关的业务需要先验证业主身份。"
             "请回复您购房时登记的手机号码，我们会发送6位验证码。")


def require_binding(ctx: Ctx, flow: str, text: str) -> str:
    """Ask for the phone; ``flow`` resumes (with the form it had, if any) once the owner is verified."""
    ctx.state["resume"] = {"flow": flow, "text": text, "form": ctx.state.get("form")}
    new_form(ctx.state, "bind_phone", asking="phone")
    return ASK_PHONE


def ask_house(ctx: Ctx, houses: list[House], *, lead: str = "") -> str:
    new_form(ctx.state, "choose_house", {"options": [h.id for h in houses]}, asking="house")
    lines = "\n".join(f"{n}. {house_text(h)}" for n, h in enumerate(houses, 1))
    return f"{lead}您名下有{len(houses)}套房屋，请问是哪一套？回复序号即可：\n{lines}"


def capped_reply() -> str:
    return ("今天获取验证码的次数已达上限，为保护您的信息已暂停发送，请明天再试；"
            "也可以回复“人工”由客服协助核实。")


BIND_REQUEST = re.compile(r"绑定|认证|验证身份|实名|关联(?:我的)?房|登记(?:一下)?业主|我是业主")


class BindingFlow(Flow):
    name = "binding"
    forms = frozenset({"bind_phone", "bind_code", "choose_house"})
    priority = 15  # "我是业主 想绑定一下房子": an explicit request to bind, outside any form

    async def intercept(self, ctx: Ctx) -> list[str] | None:
        text = ctx.text
        if ctx.form is not None or not BIND_REQUEST.search(text) or len(text) > 20:
            return None
        if "我是业主" in text and "绑定" not in text and ctx.intent not in ("greet", "other", "affirm"):
            return None  # "我是业主，卫生间漏水": the business comes first
        if ctx.bound:
            houses = "、".join(house_text(h) for h in await ctx.houses())
            return [f"您已完成业主身份验证（{houses or '名下房屋待核实'}），可以直接办理报修、查询办证进度等业务。"
                    "如需更换绑定的手机号，请回复“人工”由客服协助。"]
        ctx.state.pop("resume", None)
        new_form(ctx.state, "bind_phone", asking="phone")
        return ["好的，为您绑定业主身份：请回复您购房时登记的手机号码，我们会发送6位验证码。"]

    async def step(self, ctx: Ctx, form: dict[str, Any]) -> list[str] | None:
        if form["name"] == "bind_phone":
            return [await self._phone(ctx)]
        if form["name"] == "bind_code":
            return [await self._code(ctx, form)]
        chosen = await self._choose(ctx, form)
        return [chosen] if chosen is not None else None

    async def cancel(self, ctx: Ctx, form: dict[str, Any]) -> list[str]:
        drop_form(ctx.state)
        return ["好的，已取消身份验证。需要时随时回复手机号重新验证。"]

    async def _phone(self, ctx: Ctx) -> str:
        phone = ctx.phone()
        if phone is None:
            return "请回复11位手机号码（购房时登记的号码），例如 13800000000；不想验证了可以回复“取消”。"
        result = await binding.send_code(ctx.session, ctx.desk.notifier, ctx.events, ctx.identity, phone, now=ctx.now)
        new_form(ctx.state, "bind_code", {"phone": phone}, asking="code")
        if result.capped:
            return capped_reply()
        if result.throttled:
            return "验证码刚刚已发送，请查看短信并回复6位验证码（1分钟后可重新获取）。"
        # The same words whether or not the number is registered: no one learns who owns a home here.
        return (f"如该号码{mask_phone(phone)}已在物业登记，验证码已发送，请在10分钟内回复短信中的6位验证码。"
                "没有收到可回复“重新获取”。")

    async def _code(self, ctx: Ctx, form: dict[str, Any]) -> str:
        text = ctx.text
        if RESEND.search(text) and not CODE.search(text):
            phone = form["slots"]["phone"]
            result = await binding.send_code(ctx.session, ctx.desk.notifier, ctx.events, ctx.identity, phone, now=ctx.now)
            if result.capped:
                return capped_reply()
            return ("验证码刚刚已发送，请稍候1分钟再试。" if result.throttled
                    else f"如该号码{mask_phone(phone)}已在物业登记，验证码已重新发送，请查收短信。")
        if ctx.phone():
            return await self._phone(ctx)
        m = CODE.search(text)
        if m is None:
            return "请回复短信中的6位数字验证码；如需更换手机号请直接发送新号码，或回复“取消”。"
        checked = await binding.check_code(ctx.session, ctx.identity, m.group(1), now=ctx.now)
        if not checked.ok:
            if checked.reason == "wrong":
                return f"验证码不正确，请核对后重新输入（还可尝试{checked.attempts_left}次）。"
            drop_form(ctx.state)
            if checked.reason == "expired":
                return "验证码已过期，请重新发送手机号获取新的验证码。"
            if checked.reason == "locked":
                return "验证码错误次数过多，为保护您的信息已暂停验证。请稍后重新发送手机号，或回复“人工”由客服协助。"
            return "未能完成验证，请重新发送手机号码。"
        owner = checked.owner
        assert owner is not None
        ctx.conversation.owner_id = owner.id
        ctx.turn.owner = owner
        ctx.forget_houses()
        houses = await ctx.houses()
        lead = f"验证成功，{owner.name}您好！已为您绑定业主身份。"
        ctx.state.pop("form", None)
        if len(houses) > 1 and self._needs_house(ctx):
            return lead + "\n" + ask_house(ctx, houses)
        if houses:
            ctx.state["house_id"] = houses[0].id
        return lead + "\n" + await self.resume_parked(ctx)

    @staticmethod
    def _needs_house(ctx: Ctx) -> bool:
        """Only business about one home needs the house chosen (a certificate look-up lists them all)."""
        resume = ctx.state.get("resume") or {}
        return resume.get("flow") not in (None, "certificate", "my_tickets")

    async def _choose(self, ctx: Ctx, form: dict[str, Any]) -> str | None:
        options: list[int] = form["slots"]["options"]
        houses = {h.id: h for h in await ctx.houses()}
        chosen: int | None = None
        text = ctx.text
        m = re.search(r"[1-9]", text)
        ent = ctx.entity("house")
        if ent is not None:
            chosen = next((hid for hid in options if hid in houses and house_matches(houses[hid], ent.extra)), None)
        if chosen is None and m and len(text) <= 6 and int(m.group()) <= len(options):
            chosen = options[int(m.group()) - 1]
        if chosen is None:
            chosen = next((hid for hid in options if hid in houses and houses[hid].room in text
                           and houses[hid].building.name in text), None)
        if chosen is None and ctx.intent not in ("affirm", "deny", "other") and ctx.parse is not None \
                and ctx.parse.confidence >= 0.5 and ctx.entity("repair_category") is None:
            ctx.state.pop("form", None)  # something else entirely ("房本啥时候能下来"): not a choice
            ctx.state.pop("resume", None)
            return None
        if chosen is None:
            return ask_house(ctx, [houses[i] for i in options if i in houses], lead="请回复房屋前面的序号（例如 1）。\n")
        ctx.state["house_id"] = chosen
        ctx.state.pop("form", None)
        ctx.forget_houses()
        return f"好的，{house_text(houses[chosen])}。\n" + await self.resume_parked(ctx, house_id=chosen)

    async def resume_parked(self, ctx: Ctx, *, house_id: int | None = None) -> str:
        resume = ctx.state.pop("resume", None)
        if not resume:
            houses = "、".join(house_text(h) for h in await ctx.houses())
            return (f"已关联您名下的房屋：{houses}。" if houses else "") + "请问有什么可以帮您？"
        if house_id is not None:
            resume["house_id"] = house_id
        name = resume.get("flow") or resume.get("intent") or ""
        flow = ctx.router.flow(name) if name in {f.name for f in ctx.router.flows} else None
        if flow is None:
            return "请问有什么可以帮您？"
        return await flow.resume(ctx, resume)
