"""Session fixtures: the collection built once and installed once from its tarball."""
import pytest

from tarball_helpers import build_tarball, install_tarball


@pytest.fixture(scope="session")
def built_tarball(tmp_path_factory):
    return build_tarball(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def installed_collection(built_tarball, tmp_path_factory):
    return install_tarball(built_tarball, tmp_path_factory.mktemp("collections"))
