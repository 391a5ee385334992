"""A report period: one calendar month in China time (Asia/Shanghai, no daylight saving)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from actions.stages import CHINA_TZ

_MONTH = re.compile(r"([0-9]{4})-([0-9]{1,2})")


class BadPeriod(ValueError):
    """A month that cannot be read; the message says what is expected (English), ``zh`` for staff."""

    def __init__(self, message: str, zh: str) -> None:
        super().__init__(message)
        self.zh = zh


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str | None) -> Month:
        """``YYYY-MM`` (2000–2099) → a Month, else :class:`BadPeriod`."""
        m = _MONTH.fullmatch((text or "").strip())
        if not m or not (2000 <= int(m.group(1)) <= 2099) or not (1 <= int(m.group(2)) <= 12):
            raise BadPeriod(f"month must be YYYY-MM, e.g. 2026-11 (got {text!r})",
                            f"月份格式应为 YYYY-MM，例如 2026-11（收到：{text or '空'}）")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def containing(cls, at: dt.datetime) -> Month:
        local = at.astimezone(CHINA_TZ)
        return cls(local.year, local.month)

    def shift(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def start(self) -> dt.datetime:
        """The first instant of the month (China time), in UTC."""
        return dt.datetime(self.year, self.month, 1, tzinfo=CHINA_TZ).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """The first instant of the next month, in UTC (periods are half-open: ``start <= t < end``)."""
        return self.shift(1).start

    @property
    def key(self) -> int:
        """``YYYYMM`` as a number: what :func:`reports.sql.month_key` gives a timestamp in this month."""
        return self.year * 100 + self.month

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02d}"

    @property
    def zh(self) -> str:
        return f"{self.year}年{self.month}月"

    def as_of(self, now: dt.datetime) -> dt.datetime:
        """The instant "still open / overdue" is judged at: the month's end, or ``now`` while it runs."""
        return min(self.end, now)

    def __str__(self) -> str:
        return self.label
