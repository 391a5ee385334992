"""The expressions that differ between SQLite (embedded) and PostgreSQL, behind one small interface.

Dates are compared as numbers (``YYYYMMDD`` / ``YYYYMM`` in China time), which makes owner stages and
month buckets one expression on both databases. Percentiles are the nearest-rank kind
(``percentile_disc``: the smallest value with at least p of the values at or below it): PostgreSQL's
ordered-set aggregate, and on SQLite the same value picked with ``ROW_NUMBER()`` over a window.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.stages import PRE_OWNER, SETTLING, STABLE, VETERAN

CHINA_OFFSET = "+8 hours"
CHINA_ZONE = "Asia/Shanghai"


class Dialect:
    """SQL pieces for one database (``sqlite`` or ``postgresql``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pg = name == "postgresql"

    @classmethod
    def of(cls, s: AsyncSession) -> Dialect:
        return cls(s.get_bind().dialect.name)

    # -- dates ------------------------------------------------------------------------------------

    def local_key(self, ts: Any, fmt: str) -> sa.ColumnElement[int]:
        """A timestamp's China-time date as a number: ``fmt`` ``day`` → YYYYMMDD, ``month`` → YYYYMM."""
        if self.pg:
            text = sa.func.to_char(sa.func.timezone(CHINA_ZONE, ts), "YYYYMMDD" if fmt == "day" else "YYYYMM")
        else:
            text = sa.func.strftime("%Y%m%d" if fmt == "day" else "%Y%m", ts, CHINA_OFFSET)
        return sa.cast(text, sa.Integer)

    def date_key(self, day: Any) -> sa.ColumnElement[int]:
        """A ``DATE`` column as YYYYMMDD."""
        text = sa.func.to_char(sa.cast(day, sa.Date), "YYYYMMDD") if self.pg else sa.func.strftime("%Y%m%d", day)
        return sa.cast(text, sa.Integer)

    def seconds(self, later: Any, earlier: Any) -> sa.ColumnElement[float]:
        """``later - earlier`` in seconds."""
        if self.pg:
            return sa.func.extract("epoch", later - earlier)  # type: ignore[return-value]
        # julianday is a float of days: round to the millisecond, which the stored times carry at most.
        return sa.func.round((sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0, 3)

    def stage(self, handover: Any, at: Any) -> sa.ColumnElement[str]:
        """actions.stages.owner_stage in SQL: the stage on the China-time day of ``at``.

        The anniversaries are ``handover + 10000`` and ``+ 20000`` as YYYYMMDD numbers; a 29 February
        handover's anniversary is 1 March (``0229`` + 72 = ``0301``), as in :func:`~actions.stages.anniversary`.
        """
        if self.pg:  # the same rule with date arithmetic (to_char per row costs more than the rest)
            day = sa.cast(sa.func.timezone(CHINA_ZONE, at), sa.Date)
            h_date = sa.cast(handover, sa.Date)
            leap = sa.case((sa.and_(sa.extract("month", h_date) == 2, sa.extract("day", h_date) == 29), 1), else_=0)
            one = sa.cast(h_date + sa.text("interval '1 year'"), sa.Date) + leap
            two = sa.cast(h_date + sa.text("interval '2 years'"), sa.Date) + leap
            return sa.case(
                (sa.or_(handover.is_(None), h_date > day), PRE_OWNER),
                (day < one, SETTLING),
                (day <= two, STABLE),
                else_=VETERAN,
            )
        h = self.date_key(handover)
        d = self.local_key(at, "day")
        leap = sa.case((h % 10000 == 229, 72), else_=0)
        return sa.case(
            (sa.or_(handover.is_(None), h > d), PRE_OWNER),
            (d < h + 10000 + leap, SETTLING),
            (d <= h + 20000 + leap, STABLE),
            else_=VETERAN,
        )

    # -- JSON ---------------------------------------------------------------------------------------

    def json_int(self, column: Any, key: str) -> sa.ColumnElement[int]:
        """``column[key]`` (a JSON object) as an integer, NULL when absent (``4``, ``"4"`` and ``4.0`` alike)."""
        return self.score(column[key].as_string())

    def score(self, text: Any) -> sa.ColumnElement[int]:
        """A score stored as JSON text → integer; through NUMERIC on PostgreSQL, which refuses ``'4.0'``
        as an integer."""
        return sa.cast(sa.cast(text, sa.Numeric), sa.Integer) if self.pg else sa.cast(text, sa.Integer)

    # -- percentiles ----------------------------------------------------------------------------

    async def percentiles(
        self, s: AsyncSession, values: Any, fractions: tuple[tuple[int, int], ...],
    ) -> dict[Any, list[float | None]]:  # values: sa.Select[tuple[key, number]]
        """``values`` selects ``(grp, v)`` rows; → ``{grp: [p for each fraction]}`` (fractions as
        ``(numerator, denominator)``: (1, 2) is the median, (9, 10) P90). ``grp`` may be a constant."""
        sub = values.subquery()
        grp, v = sub.c[0], sub.c[1]
        if self.pg:
            cols: list[Any] = [sa.func.percentile_disc(n / d).within_group(v) for n, d in fractions]
            rows = (await s.execute(sa.select(grp, *cols).where(v.is_not(None)).group_by(grp))).all()
            return {r[0]: [None if x is None else float(x) for x in r[1:]] for r in rows}
        ranked = sa.select(
            grp.label("g"), v.label("v"),
            sa.func.row_number().over(partition_by=grp, order_by=v).label("rn"),
            sa.func.count().over(partition_by=grp).label("n"),
        ).where(v.is_not(None)).subquery()
        cols = [sa.func.min(sa.case((ranked.c.rn * d >= ranked.c.n * n, ranked.c.v))) for n, d in fractions]
        rows = (await s.execute(sa.select(ranked.c.g, *cols).group_by(ranked.c.g))).all()
        return {r[0]: [None if x is None else float(x) for x in r[1:]] for r in rows}


def rate(part: int | None, whole: int | None) -> float | None:
    """``part / whole`` rounded to 4 places; None when there is nothing to divide by."""
    if not whole:
        return None
    return round((part or 0) / whole, 4)
