"""Session calendars from a course template of ``courses.yaml``.

Month steps are counted from the start date, not chained, and keep its day of month clamped to
the month's length: a course started on 31 January meets on 29 February (leap year) and 31 March.
"""
from __future__ import annotations

import calendar as _cal
import datetime as dt
from dataclasses import dataclass

from pipelines.knowledge.models import CourseTemplate, Interval


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole calendar months, clamped to the last day of the target month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, _cal.monthrange(year, month)[1]))


def add_interval(day: dt.date, step: Interval, times: int = 1) -> dt.date:
    """``day`` plus ``times`` steps of ``step``."""
    if step.months is not None:
        return add_months(day, step.months * times)
    return day + dt.timedelta(days=(step.days or 7 * step.weeks) * times)


def session_dates(start: dt.date, template: CourseTemplate) -> list[dt.date]:
    """The ``sessions.max`` session dates of a course starting on ``start``."""
    return [add_interval(start, template.interval, i) for i in range(template.sessions.max)]


@dataclass(frozen=True)
class Course:
    """A course laid out from its start: sessions, which are optional, and the maintenance window."""

    template: str
    label: str
    description: str
    sessions_min: int
    sessions_max: int
    dates: tuple[dt.date, ...] = ()
    maintenance: str = ""
    maintenance_from: dt.date | None = None
    maintenance_to: dt.date | None = None

    @property
    def optional_dates(self) -> tuple[dt.date, ...]:
        """Sessions beyond the minimum, left to the practitioner's judgement."""
        return self.dates[self.sessions_min:]

    def to_dict(self) -> dict:
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {
            "template": self.template, "label": self.label, "description": self.description,
            "sessions_min": self.sessions_min, "sessions_max": self.sessions_max,
            "dates": [d.isoformat() for d in self.dates],
            "optional_dates": [d.isoformat() for d in self.optional_dates],
            "maintenance": {"description": self.maintenance, "from": iso(self.maintenance_from),
                            "to": iso(self.maintenance_to)},
        }


def build_course(template_id: str, template: CourseTemplate, start: dt.date | None) -> Course:
    """The course of ``template``; without ``start`` only its description (no dates).

    Maintenance is counted from the last planned session (``sessions.max``)."""
    common = dict(template=template_id, label=template.label, description=template.description,
                  sessions_min=template.sessions.min, sessions_max=template.sessions.max,
                  maintenance=template.maintenance.description)
    if start is None:
        return Course(**common)
    dates = session_dates(start, template)
    last = dates[-1]
    return Course(**common, dates=tuple(dates),
                  maintenance_from=add_interval(last, template.maintenance.after_min),
                  maintenance_to=add_interval(last, template.maintenance.after_max))
