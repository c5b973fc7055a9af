"""Calendar arithmetic of both course templates, with exact dates."""
from __future__ import annotations

from datetime import date

import pytest

from pipelines.knowledge import load_knowledge
from pipelines.knowledge.models import Interval
from pipelines.planning import make_plan, parse_intake
from pipelines.planning.calendar import add_interval, add_months, build_course, session_dates
from pipelines.planning.samples import example_analysis

TEMPLATES = load_knowledge().courses.templates


@pytest.mark.parametrize("day, months, expected", [
    (date(2025, 1, 31), 1, date(2025, 2, 28)),
    (date(2024, 1, 31), 1, date(2024, 2, 29)),   # leap year
    (date(2025, 1, 31), 2, date(2025, 3, 31)),   # counted from the start, not chained
    (date(2025, 11, 30), 3, date(2026, 2, 28)),  # across the year end
    (date(2025, 5, 15), 12, date(2026, 5, 15)),
    (date(2025, 3, 31), -1, date(2025, 2, 28)),
])
def test_add_months(day, months, expected):
    assert add_months(day, months) == expected


def test_add_interval_units():
    start = date(2025, 12, 22)
    assert add_interval(start, Interval(days=10), 2) == date(2026, 1, 11)
    assert add_interval(start, Interval(weeks=2), 1) == date(2026, 1, 5)
    assert add_interval(start, Interval(months=6), 2) == date(2026, 12, 22)


def test_standard_course():
    course = build_course("standard", TEMPLATES["standard"], date(2025, 3, 3))
    assert course.dates == (date(2025, 3, 3), date(2025, 3, 17), date(2025, 3, 31), date(2025, 4, 14),
                            date(2025, 4, 28), date(2025, 5, 12), date(2025, 5, 26), date(2025, 6, 9))
    assert course.optional_dates == (date(2025, 5, 26), date(2025, 6, 9))  # sessions 7 and 8
    # maintenance 1-2 times a year: 6-12 months after the last session
    assert (course.maintenance_from, course.maintenance_to) == (date(2025, 12, 9), date(2026, 6, 9))


def test_standard_course_across_the_year_end():
    assert session_dates(date(2025, 12, 1), TEMPLATES["standard"])[-3:] == [
        date(2026, 2, 9), date(2026, 2, 23), date(2026, 3, 9)]  # sessions 6-8: +70, +84, +98 days


def test_intensive_course_clamps_month_ends():
    course = build_course("intensive", TEMPLATES["intensive"], date(2024, 1, 31))
    assert course.dates == (date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31))
    assert course.optional_dates == ()
    # maintenance every 3-6 months after the third session
    assert (course.maintenance_from, course.maintenance_to) == (date(2024, 6, 30), date(2024, 9, 30))


def test_course_without_start_has_no_dates():
    course = build_course("intensive", TEMPLATES["intensive"], None)
    assert course.dates == () and course.maintenance_from is None
    assert course.to_dict()["maintenance"] == {"description": "every 3-6 months", "from": None, "to": None}


def _plan(template: str, start: date | None):
    intake = parse_intake({"pregnant": False, "breastfeeding": False, "cancer": False,
                           "insulin_diabetes": False, "coagulation_disorder": False,
                           "paralysis_history": False, "cardiac_disease": False, "urticaria": False,
                           "allergies": [], "medications": []})
    return make_plan(example_analysis(), intake, start=start, template=template).to_dict()


def test_plan_calendar_both_templates():
    standard = _plan("standard", date(2025, 3, 3))
    assert standard["calendar"] == ["2025-03-03", "2025-03-17", "2025-03-31", "2025-04-14",
                                    "2025-04-28", "2025-05-12", "2025-05-26", "2025-06-09"]
    intensive = _plan("intensive", date(2025, 1, 31))
    assert intensive["calendar"] == ["2025-01-31", "2025-02-28", "2025-03-31"]
    assert intensive["course"]["maintenance"] == {"description": "every 3-6 months",
                                                  "from": "2025-06-30", "to": "2025-09-30"}


def test_patch_test_is_the_day_before_the_first_session():
    plan = _plan("standard", date(2025, 3, 1))
    assert plan["patch_test"]["date"] == "2025-02-28"
    assert plan["patch_test"]["text"] == (
        "Patch test on 2025-02-28: apply the chosen products to a small area of skin 24 hours "
        "before the first session (2025-03-01) and check for a reaction.")
    assert _plan("standard", None)["patch_test"]["date"] is None
    assert _plan("standard", None)["calendar"] == []
