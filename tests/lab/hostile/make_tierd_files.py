"""Write the tierd config files of the hostile cases, in the guest (the big ones are made there,
not copied over SSH).

    python3 hostile.py tierd-spec | ssh GUEST python3 make_tierd_files.py DIR

The spec is {case id: {json: OBJECT | text: STRING | generate: big|deep|binary, mode: "0644"}};
each case becomes DIR/ID.json, owned by root, with mode 0644 unless the spec gives another.
DIR itself is 0755 root, so that only the file mode of a case can be the problem.
"""

import json
import os
import sys


def content(spec):
    if "json" in spec:
        return json.dumps(spec["json"]).encode()
    if "text" in spec:
        return spec["text"].encode()
    kind = spec["generate"]
    if kind == "big":
        # A valid config that is only too large: {"comment": "xxx..."} of exactly spec["bytes"] bytes.
        head, tail = b'{"comment": "', b'"}'
        return head + b"x" * (spec["bytes"] - len(head) - len(tail)) + tail
    if kind == "deep":
        depth = spec["depth"]
        return b'{"comment": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "binary":
        return bytes(range(256)) * 16
    raise SystemExit("make_tierd_files: unknown generator %r" % kind)


def main():
    directory = sys.argv[1]
    spec = json.load(sys.stdin)
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    for case_id, case in sorted(spec.items()):
        path = os.path.join(directory, case_id + ".json")
        with open(path, "wb") as handle:
            handle.write(content(case))
        os.chmod(path, int(case.get("mode", "0644"), 8))
    print("make_tierd_files: %d files in %s" % (len(spec), directory))


if __name__ == "__main__":
    main()
