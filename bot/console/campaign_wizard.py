"""The campaign wizard and the campaign's action buttons (approve, send, pause, resume, cancel).

Built on the campaigns module's public functions once it is merged; until then the list, progress and
per-recipient pages (``bot/console/campaigns.py``) work from the schema alone and there is no wizard.
"""

from __future__ import annotations

from typing import Any

from bot.store.models import Campaign

AVAILABLE = False
"""Whether the wizard and the action buttons are wired to the campaigns module."""


def actions_for(staff: Any, campaign: Campaign) -> list[tuple[str, str, str]]:
    """The buttons ``staff`` may press on ``campaign`` now: (verb, words, style)."""
    return []


async def preview_of(request: Any, campaign: Campaign) -> dict[str, Any] | None:
    """The preview of a campaign that has not started (none without the campaigns module)."""
    return None
