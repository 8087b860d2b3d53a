"""Pipeline tests import ``components`` and ``pipelines`` from the repository root."""

import sys

from vidpred.config import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
