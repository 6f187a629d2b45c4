"""The test suite. It runs as an explicit `test` environment (the published development secrets are
refused anywhere else), and every process it starts inherits that unless told otherwise."""

import os

os.environ.setdefault("CAMPAIGNS_ENVIRONMENT", "test")
