"""Fixtures for the AWX tests: the collection built and installed from its tarball, as an EE holds it."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "packaging"))

from tarball_helpers import build_tarball, install_tarball  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def built_tarball(tmp_path_factory):
    return build_tarball(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def installed_collection(built_tarball, tmp_path_factory):
    return install_tarball(built_tarball, tmp_path_factory.mktemp("collections"))
