"""Treatment planning: from an analysis document and a patient intake to a plan that suggests
ingredients with reasons, screens contraindications and lays out pre-care, post-care and a
session calendar. Pure and deterministic; all knowledge comes from :mod:`pipelines.knowledge`.

    from pipelines.planning import make_plan, parse_intake
    plan = make_plan(analysis_doc, parse_intake(json_bytes), start=date(2025, 3, 3))
    plan.to_dict()
"""
from pipelines.planning.concerns import RejectedAnalysis, detect_concerns
from pipelines.planning.engine import Plan, make_plan
from pipelines.planning.intake import Intake, parse_intake

__all__ = ["Intake", "Plan", "RejectedAnalysis", "detect_concerns", "make_plan", "parse_intake"]
