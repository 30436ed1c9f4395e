"""Chooses the filter queue: the compiled one, or its pure-Python twin when the extension is
missing or SERSYNCPY_NO_EXTENSIONS=1. Both have the API of sersyncpy/_filterqueue.pyi.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def _choose():
    if os.environ.get("SERSYNCPY_NO_EXTENSIONS", "") not in ("", "0"):
        from sersyncpy._filterqueue_py import FilterQueue

        return FilterQueue, "python", "SERSYNCPY_NO_EXTENSIONS is set"
    try:
        from sersyncpy._filterqueue import FilterQueue
    except ImportError as exc:
        from sersyncpy._filterqueue_py import FilterQueue

        return FilterQueue, "python", f"the compiled extension is missing ({exc})"
    return FilterQueue, "compiled", None


FilterQueue, IMPLEMENTATION, _why_python = _choose()
if _why_python:
    logger.info("filter queue: pure Python, because %s", _why_python)
else:
    logger.debug("filter queue: compiled")
