"""Schemathesis CLI hooks for the full fuzz run (SCHEMATHESIS_HOOKS=tests.fuzz.cli_hooks; see tests/fuzz/README.md).

Importing this module registers the hook: that is how the CLI loads hooks. The job type comes
from BATON_FUZZ_JOB_TYPE (default llm_request, on the run's own vhost).
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

from tests.fuzz.cases import adjust


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]) -> None:
    job_type = os.environ.get("BATON_FUZZ_JOB_TYPE", "llm_request")
    adjust(case, job_type, float(os.environ.get("BATON_FUZZ_MAX_WAIT", "0.05")))
