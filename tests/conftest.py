"""Fixtures shared by the test files: the reference figures in `shared/`.

The reference fixtures live in the `shared` folder beside the checkout
(`../shared`); tests that need them skip, saying why, where it is absent.
"""

import json
import pathlib

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPOSITORY.parent / "shared"


@pytest.fixture(scope="session")
def reference_counts():
    """counts.json: the reference's MACs and parameters per model and width."""
    path = SHARED / "reference" / "counts.json"
    if not path.is_file():
        pytest.skip(
            f"the reference counts ({path}) are not beside the checkout"
        )
    return json.loads(path.read_text())
