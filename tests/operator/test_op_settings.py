"""Operator settings: flags over environment over defaults."""

from __future__ import annotations

import pytest

from inference_operator.settings import DEFAULT_RUNTIME_IMAGE, parse


def test_defaults_watch_all_namespaces() -> None:
    settings = parse([], environ={})
    assert settings.clusterwide and settings.runtime_image == DEFAULT_RUNTIME_IMAGE
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"


def test_environment() -> None:
    env = {"WATCH_NAMESPACES": "a, b", "RUNTIME_IMAGE": "mirror.invalid/rt:1", "LOG_FORMAT": "json"}
    settings = parse([], environ=env)
    assert settings.namespaces == ("a", "b") and not settings.clusterwide
    assert (settings.runtime_image, settings.log_format) == ("mirror.invalid/rt:1", "json")


def test_flags_win_over_environment() -> None:
    settings = parse(["--namespace", "x", "--runtime-image", "flag:1"], environ={"WATCH_NAMESPACES": "a"})
    assert settings.namespaces == ("x",) and settings.runtime_image == "flag:1"
    assert parse(["--all-namespaces"], environ={"WATCH_NAMESPACES": "a"}).clusterwide


def test_bad_log_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse([], environ={"LOG_FORMAT": "xml"})
    assert "LOG_FORMAT" in capsys.readouterr().err
