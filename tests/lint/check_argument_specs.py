"""Fail when a role's meta/argument_specs.yml and its defaults/main.yml disagree.

For each role (default: every directory under roles/), the options of the ``main`` entry point are
compared with defaults/main.yml: every default must be a documented option, every documented
option with a default must be in defaults/main.yml, and the two values must be equal (no default
in the spec is null). ansible-core
checks the specs against what a play passes, not against the defaults, so nothing else keeps them
together.

Usage: python3 tests/lint/check_argument_specs.py [ROLE_DIR...]    (exit 1 and one line per mismatch)
"""

import os
import sys

import yaml


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def mismatches(role_dir):
    """Lines describing every disagreement between a role's argument specs and its defaults."""
    name = os.path.basename(os.path.normpath(role_dir))
    specs_path = os.path.join(role_dir, "meta", "argument_specs.yml")
    defaults_path = os.path.join(role_dir, "defaults", "main.yml")
    if not os.path.exists(specs_path):
        return []
    options = ((load(specs_path).get("argument_specs") or {}).get("main") or {}).get("options") or {}
    defaults = load(defaults_path) if os.path.exists(defaults_path) else {}
    found = []
    for key in sorted(set(defaults) - set(options)):
        found.append("%s: %s is in defaults/main.yml but not in meta/argument_specs.yml" % (name, key))
    for key in sorted(options):
        spec = options[key] or {}
        if "default" in spec and key not in defaults:
            found.append("%s: %s has a default in meta/argument_specs.yml but is not in defaults/main.yml"
                         % (name, key))
        elif key in defaults and spec.get("default") != defaults[key]:
            # A spec without a default means null, which is what an empty value in defaults/main.yml is.
            found.append("%s: %s defaults to %r in defaults/main.yml but %r in meta/argument_specs.yml"
                         % (name, key, defaults[key], spec.get("default")))
    return found


def main(argv):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    roles = argv or sorted(os.path.join(repo, "roles", name) for name in os.listdir(os.path.join(repo, "roles")))
    found = [line for role in roles for line in mismatches(role)]
    for line in found:
        print("argument specs: " + line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
