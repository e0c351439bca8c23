"""The engine's settings (issue 22 §4): every variable the engine reads, read in one place
(circuitdiff.settings), once per process, and handed down; the service's settings compose them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from circuitdiff.settings import CliSettings, EngineSettings, SettingsError, current, use

GIB = 2**30


def test_defaults_are_the_readmes():
    s = EngineSettings.from_env({})
    assert s == EngineSettings()
    assert s.cache and s.cache_dir == Path("~/.cache/circuitdiff").expanduser()
    assert s.cache_max_bytes == 20 * GIB and s.datasets_dir is None
    assert s.memory_budget is None and s.scan_cpu_tokens == 8192


def test_every_variable_is_read():
    s = EngineSettings.from_env({
        "CIRCUITDIFF_CACHE": "off", "CIRCUITDIFF_CACHE_DIR": "/c", "CIRCUITDIFF_DATA_DIR": "/d",
        "CIRCUITDIFF_CACHE_MAX_BYTES": "1000", "CIRCUITDIFF_DATASETS_DIR": "/ds",
        "CIRCUITDIFF_MEMORY_BUDGET": "24GiB", "CIRCUITDIFF_SCAN_CPU_TOKENS": "512",
    })
    assert s == EngineSettings(cache=False, cache_dir=Path("/c"), cache_max_bytes=1000, datasets_dir=Path("/ds"),
                               memory_budget=24 * GIB, scan_cpu_tokens=512)
    assert EngineSettings.from_env({"CIRCUITDIFF_DATA_DIR": "/d"}).cache_dir == Path("/d/cache")
    for off in ("0", "false", "No", "OFF"):
        assert not EngineSettings.from_env({"CIRCUITDIFF_CACHE": off}).cache
    assert EngineSettings.from_env({"CIRCUITDIFF_CACHE": "1"}).cache


def test_a_deployments_data_dir_places_cache_and_datasets(tmp_path):
    """The service's settings pass their data_dir: the worker caches under it whatever the library's
    variables say, and still reads the engine's own limits."""
    s = EngineSettings.from_env({"CIRCUITDIFF_CACHE": "0", "CIRCUITDIFF_CACHE_DIR": "/elsewhere",
                                 "CIRCUITDIFF_DATASETS_DIR": "/elsewhere", "CIRCUITDIFF_MEMORY_BUDGET": "1GB"},
                                data_dir=tmp_path)
    assert s.cache and s.cache_dir == tmp_path / "cache" and s.datasets_dir == tmp_path / "datasets"
    assert s.memory_budget == 10**9


@pytest.mark.parametrize("name, value", [("CIRCUITDIFF_MEMORY_BUDGET", "lots"),
                                         ("CIRCUITDIFF_CACHE_MAX_BYTES", "20GiB"),
                                         ("CIRCUITDIFF_SCAN_CPU_TOKENS", "many")])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        EngineSettings.from_env({name: value})


def test_use_scopes_the_active_settings_per_thread():
    outer, inner = EngineSettings(scan_cpu_tokens=1), EngineSettings(scan_cpu_tokens=2)
    default = current()
    seen = []
    with use(outer):
        with use(inner):
            assert current() is inner
            t = threading.Thread(target=lambda: seen.append(current()))  # a new thread: its own context
            t.start()
            t.join()
        assert current() is outer
    assert current() is default and seen == [default]


def test_cli_settings():
    assert CliSettings.from_env({}) == CliSettings()
    s = CliSettings.from_env({"CIRCUITDIFF_KEY": "k", "CIRCUITDIFF_WEBHOOK_SECRET": "s", "CIRCUITDIFF_DEBUG": "1"})
    assert s == CliSettings(api_key="k", webhook_secret="s", debug=True)


def test_cli_sends_the_key_from_its_variable(cli, monkeypatch, tmp_path):
    """``--api-key`` defaults to $CIRCUITDIFF_KEY, read when the command starts; the flag wins."""
    import circuitdiff.cli as cli_mod

    sent = []
    monkeypatch.setattr(cli_mod, "compare_on_server", lambda spec, server, key, bar=None: sent.append(key) or {})
    monkeypatch.setattr(cli_mod, "summary", lambda data: "")
    monkeypatch.setenv("CIRCUITDIFF_KEY", "from-env")
    args = ("compare", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--task", "ioi",
            "--server", "http://127.0.0.1:1", "--out", str(tmp_path / "r.json"))
    assert cli(*args).returncode == 0
    assert cli(*args, "--api-key", "from-flag").returncode == 0
    assert sent == ["from-env", "from-flag"]


def test_cli_reports_a_bad_setting_in_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUITDIFF_MEMORY_BUDGET", "lots")
    r = cli("compare", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--task", "ioi",
            "--prompts", "2", "--device", "cpu", "--out", str(tmp_path / "r.json"))
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: CIRCUITDIFF_MEMORY_BUDGET='lots': expected bytes like 24GiB, 512MB or 1000000"], r.stderr
    assert "Traceback" not in r.stderr
