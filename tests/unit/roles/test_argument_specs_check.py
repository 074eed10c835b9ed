"""tests/lint/check_argument_specs.py: the roles agree with their specs, and a disagreement is caught."""
import importlib.util
import pathlib

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
SPEC = importlib.util.spec_from_file_location("check_argument_specs", REPO / "tests" / "lint" / "check_argument_specs.py")
check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check)


def make_role(tmp_path, options, defaults):
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump({"argument_specs": {"main": {"short_description": "demo", "options": options}}}))
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    return str(role)


def test_every_role_of_the_collection_agrees():
    assert check.main([]) == 0


def test_agreeing_role_passes(tmp_path):
    role = make_role(tmp_path, {"demo_size": {"type": "str", "default": "1G"}, "demo_limit": {"type": "int"}},
                     {"demo_size": "1G", "demo_limit": None})
    assert check.mismatches(role) == []


@pytest.mark.parametrize("options, defaults, expected", [
    ({"demo_size": {"type": "str", "default": "1G"}}, {"demo_size": "2G"},
     "demo: demo_size defaults to '2G' in defaults/main.yml but '1G' in meta/argument_specs.yml"),
    ({"demo_size": {"type": "str", "default": "1G"}}, {},
     "demo: demo_size has a default in meta/argument_specs.yml but is not in defaults/main.yml"),
    ({}, {"demo_extra": True},
     "demo: demo_extra is in defaults/main.yml but not in meta/argument_specs.yml"),
    ({"demo_limit": {"type": "int"}}, {"demo_limit": 5},
     "demo: demo_limit defaults to 5 in defaults/main.yml but None in meta/argument_specs.yml"),
])
def test_mismatch_is_reported(tmp_path, capsys, options, defaults, expected):
    role = make_role(tmp_path, options, defaults)
    assert check.mismatches(role) == [expected]
    assert check.main([role]) == 1
    assert expected in capsys.readouterr().err
