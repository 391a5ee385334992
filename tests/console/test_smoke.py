from __future__ import annotations

from tests.conftest import YezhuFactory
from tests.console.conftest import login


async def test_pages_render(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    await login(client, "admin")
    for path in ["/console/", "/console/tickets", "/console/owners?q=张三", "/console/owners?q=3栋2单元501",
                 "/console/knowledge", "/console/knowledge/new", "/console/knowledge-unanswered",
                 "/console/dashboard", "/console/staff", "/console/audit"]:
        resp = await client.get(path)
        text = await resp.text()
        assert resp.status == 200, (path, text[:2000])
