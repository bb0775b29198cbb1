"""Evaluation: closed-loop rollouts of a policy on a suite's fixed episode list (see runner.py)."""

from videopolicy.evaluate.ledger import RESULT_COLUMNS, Ledger, RunKey
from videopolicy.evaluate.policies import SANITY_POLICIES, ActRequest, Policy, PolicySpec
from videopolicy.evaluate.runner import EvaluationError, evaluate, plan_evaluation, task_table

__all__ = ["RESULT_COLUMNS", "SANITY_POLICIES", "ActRequest", "EvaluationError", "Ledger", "Policy", "PolicySpec",
           "RunKey", "evaluate", "plan_evaluation", "task_table"]
