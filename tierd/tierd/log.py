"""Structured log lines for the journal: `level=info event=... key=value` on stderr.

systemd adds timestamp, unit and PID, so the line carries only what tierd knows.
"""

import sys


def _quote(value):
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return text


def format_line(level, event, fields):
    parts = ["level=%s" % level, "event=%s" % _quote(event)]
    parts.extend("%s=%s" % (key, _quote(value)) for key, value in fields.items())
    return " ".join(parts)


class Logger:
    def __init__(self, stream=None, debug=False):
        self.stream = stream
        self.debug_enabled = debug

    def _emit(self, level, event, fields):
        stream = self.stream or sys.stderr
        stream.write(format_line(level, event, fields) + "\n")
        stream.flush()

    def info(self, event, **fields):
        self._emit("info", event, fields)

    def warning(self, event, **fields):
        self._emit("warning", event, fields)

    def error(self, event, **fields):
        self._emit("error", event, fields)

    def debug(self, event, **fields):
        if self.debug_enabled:
            self._emit("debug", event, fields)
