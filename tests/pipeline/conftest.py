from __future__ import annotations

import pytest

from mediahub.config import Settings
from mediahub.pipeline.options import image_options


@pytest.fixture(scope="session")
def options():
    return image_options(Settings(_env_file=None))
