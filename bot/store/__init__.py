"""Persistence: the SQLAlchemy models, the async engine and session factory, and migrations."""

from bot.store.db import Database
from bot.store.models import Base

__all__ = ["Base", "Database"]
