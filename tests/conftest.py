"""Shared pytest set-up: deterministic, quiet and fast defaults for every test."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Two cores on CI: one intra-op thread keeps timings stable and avoids oversubscription when
# nbgrader kernels run next to the test process.
torch.set_num_threads(1)

settings.register_profile(
    "default",
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
