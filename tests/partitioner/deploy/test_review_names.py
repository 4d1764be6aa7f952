"""Review of repository names (which DeploySplit takes from the network and the Triton export
turns into directories): a trailing newline is not a name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from partitioner.deploy.repository import check_model_name, check_version
from partitioner.errors import EdgecutError


@pytest.mark.parametrize(
    "check, name", [(check_model_name, "digits_cnn\n"), (check_version, "1\n")]
)
def test_a_name_with_a_trailing_newline_is_refused(check: Callable[[str], str], name: str) -> None:
    with pytest.raises(EdgecutError, match="is not valid"):
        check(name)


@pytest.mark.parametrize(
    "check, name",
    [(check_model_name, "../x"), (check_model_name, ".hidden"), (check_model_name, "a/b"),
     (check_version, "01"), (check_version, "1/../2"), (check_model_name, "")],
)  # fmt: skip
def test_names_that_would_leave_their_directory_are_refused(
    check: Callable[[str], str], name: str
) -> None:
    with pytest.raises(EdgecutError, match="is not valid"):
        check(name)
