from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import faces_dir


@pytest.fixture(scope="session")
def faces() -> Path:
    folder = faces_dir()
    if folder is None:
        pytest.skip("labelled photos not found: set FINDFACE_TEST_FACES or lay shared/ beside the project")
    return folder
