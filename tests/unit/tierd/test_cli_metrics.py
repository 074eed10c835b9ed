import json
import urllib.request

from conftest import ListStream
from tierd import metrics
from tierd.cli import ConfigReloader
from tierd.log import Logger, format_line


def test_invalid_reload_keeps_running_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"interval_seconds": 5}))
    path.chmod(0o644)  # run as root, tierd refuses a group-writable config (umask 0002)
    stream = ListStream()
    reloader = ConfigReloader(str(path), Logger(stream))
    assert reloader() is None  # no SIGHUP yet
    reloader.request()
    assert reloader()["interval_seconds"] == 5
    path.write_text(json.dumps({"interval_seconds": -1}))
    reloader.request()
    assert reloader() is None
    assert 'event=reload_rejected reason="interval_seconds: -1 must be >= 0.1"' in stream.lines[-1]
    assert 'action="keeping the running config"' in stream.lines[-1]


def test_log_lines_are_key_value():
    assert format_line("info", "moved", {"pages": 512, "reason": 'a "b" c'}) == \
        'level=info event=moved pages=512 reason="a \\"b\\" c"'


def test_http_metrics_on_loopback_only():
    server = metrics.MetricsServer(0)  # any free port
    try:
        host, port = server.server.server_address
        assert host == "127.0.0.1"
        server.text = "tierd_up 1\n"
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
            assert response.read() == b"tierd_up 1\n"
            assert response.headers["Content-Type"].startswith("text/plain")
    finally:
        server.close()


def test_textfile_written_atomically(tmp_path):
    target = tmp_path / "collector" / "tierd.prom"
    metrics.write_atomic(str(target), "tierd_up 1\n")
    assert target.read_text() == "tierd_up 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["tierd.prom"]  # no temp file left behind
