"""The dialogue's flows, one module each, registered on one router (docs/ARCHITECTURE.md "Flows").

Adding a flow: write ``actions/flows/<name>.py`` with a :class:`~actions.flows.base.Flow` subclass and
add one line to :func:`build_router`. The order of the list does not matter; the router orders
intercepts by each flow's ``priority``.
"""

from __future__ import annotations

from actions.flows.base import Flow, Router
from actions.flows.binding import BindingFlow
from actions.flows.certificate import CertificateFlow
from actions.flows.complaint import ComplaintFlow
from actions.flows.emergency import EmergencyFlow
from actions.flows.handover import HandoverFlow
from actions.flows.knowledge import KnowledgeFlow
from actions.flows.my_tickets import MyTicketsFlow
from actions.flows.notice_reply import NoticeReplyFlow
from actions.flows.optout import OptOutFlow
from actions.flows.quote import QuoteFlow
from actions.flows.repair import RepairFlow
from actions.flows.smalltalk import SmallTalkFlow
from actions.flows.survey import SurveyFlow

__all__ = ["Flow", "Router", "build_router"]


def build_router() -> Router:
    return Router([
        EmergencyFlow(),
        MyTicketsFlow(),
        QuoteFlow(),
        HandoverFlow(),
        CertificateFlow(),
        KnowledgeFlow(),
        BindingFlow(),
        RepairFlow(),
        ComplaintFlow(),
        SmallTalkFlow(),
        OptOutFlow(),
        NoticeReplyFlow(),
        SurveyFlow(),
    ])
