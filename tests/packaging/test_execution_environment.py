"""The execution environment definitions, checked with ansible-builder without a container engine.

`ansible-builder build` needs podman or docker (neither runs here); `create` writes the same
build context the build would use, and `introspect` reads collections the way the build does.
"""
import shutil

import pytest
import yaml

from tarball_helpers import REPO, BIN, ansible_env, run

pytestmark = pytest.mark.skipif(not (BIN / "ansible-builder").exists(),
                                reason="ansible-builder is not installed in %s (requirements-docs.txt)" % BIN)


def test_builder_introspection_finds_collection_dependencies(installed_collection):
    proc = run([BIN / "ansible-builder", "introspect", str(installed_collection)],
               cwd=installed_collection, env=ansible_env(installed_collection))
    data = yaml.safe_load(proc.stdout)
    bindep = [line.split("#")[0].strip() for line in data["system"]]
    assert "openssh-client [platform:dpkg]" in bindep, data
    assert "openssh-clients [platform:rpm]" in bindep, data
    assert all("from collection tiering.pmem" in line for line in data["system"]), data


def test_builder_creates_build_context_with_the_tarball(built_tarball, tmp_path):
    # The definition refers to ../../build/tiering-pmem-*.tar.gz (what `make build` writes);
    # lay out the same relative paths around a copy of it.
    awx = tmp_path / "playbooks" / "awx"
    awx.mkdir(parents=True)
    shutil.copy(REPO / "playbooks/awx/execution-environment.yml", awx)
    (tmp_path / "build").mkdir()
    shutil.copy(built_tarball, tmp_path / "build")
    context = tmp_path / "context"
    run([BIN / "ansible-builder", "create", "-f", str(awx / "execution-environment.yml"),
         "-c", str(context), "--output-filename", "Containerfile"], cwd=tmp_path, env=ansible_env(tmp_path))
    containerfile = (context / "Containerfile").read_text()
    assert (context / "_build/collections" / built_tarball.name).is_file()
    assert "ansible-core==2.19.14" in containerfile
    assert "COPY _build/collections/ /build/collections/" in containerfile
    requirements = yaml.safe_load((context / "_build/requirements.yml").read_text())
    assert requirements["collections"] == [{"name": "/build/collections/tiering-pmem.tar.gz", "type": "file"}]
