"""Test configuration: notebooks run in fast mode (small data, few epochs) under pytest.

Kernels that nbval starts inherit this environment, so the notebooks' config cells see it.
"""

import os

os.environ.setdefault("UNET_FAST", "1")
