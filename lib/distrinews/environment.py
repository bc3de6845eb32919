"""Where the code runs: inside a Kaggle notebook or not, and the Kaggle settings a message may name."""

from __future__ import annotations

import os

GPU_SETTING = "Settings -> Accelerator -> GPU T4 x2 (the session restarts; then Run All again)"
INTERNET_SETTING = "Settings -> Internet -> on (verify your phone number once in your Kaggle account settings)"


def on_kaggle() -> bool:
    """True inside a Kaggle notebook (its kernels set KAGGLE_KERNEL_RUN_TYPE)."""
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ
