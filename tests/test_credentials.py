"""Keys go only where they belong, and no credential is written down: recording OpenAI-compatible servers
on 127.0.0.1 stand for the model server, the judge and the question rewriter of real `gaea data build` and
`gaea eval bench` runs (in process, and the README's example as a real `gaea` process).

Each case failed before: OPENAI_API_KEY went to every server (the local model included), the judge had no
key of its own, a URL's ``?key=`` was glued before the request path, and ``user:pass@`` and ``?key=`` were
written verbatim to build.json and the dataset card."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gaea.cli import main as gaea_main
from gaea.credentials import (
    JUDGE_KEY_ENV,
    MODEL_KEY_ENV,
    REWRITE_KEY_ENV,
    api_key_for,
    redact_url,
    redacted,
    split_endpoint,
)
from gaea.errors import ConfigError
from gaea.models.backends.openai_compat import OpenAIBackend
from gaea.osm import OverpassSource
from gaea.records import QARecord
from gaea.types import Message
from tests.servers import recording_openai_server

GAEA = str(Path(sys.executable).parent / "gaea")
OPENAI_KEY = "sk-openai-test-0000"
KEY_VARIABLES = ("OPENAI_API_KEY", MODEL_KEY_ENV, JUDGE_KEY_ENV, REWRITE_KEY_ENV)
#: Every secret the runs below are given; none may appear in a file or a log.
SECRETS = (OPENAI_KEY, "model-key-1111", "judge-key-2222", "rw-pass-3333", "query-secret-4444", "judge-q-5555",
           "model-pass-6666")


@pytest.fixture
def keyless_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("url", "key", "env", "key_env", "expected"),
    [
        ("http://127.0.0.1:8000/v1", None, {"OPENAI_API_KEY": OPENAI_KEY}, MODEL_KEY_ENV, None),
        ("https://api.openai.com/v1", None, {"OPENAI_API_KEY": OPENAI_KEY}, JUDGE_KEY_ENV, OPENAI_KEY),
        ("https://API.OpenAI.com/v1", None, {"OPENAI_API_KEY": OPENAI_KEY}, MODEL_KEY_ENV, OPENAI_KEY),
        ("http://api.openai.com/v1", None, {"OPENAI_API_KEY": OPENAI_KEY}, MODEL_KEY_ENV, None),
        ("https://api.openai.com.evil.example/v1", None, {"OPENAI_API_KEY": OPENAI_KEY}, MODEL_KEY_ENV, None),
        ("http://127.0.0.1:8000/v1", None, {MODEL_KEY_ENV: "m", JUDGE_KEY_ENV: "j"}, MODEL_KEY_ENV, "m"),
        ("http://127.0.0.1:8000/v1", None, {MODEL_KEY_ENV: "m", JUDGE_KEY_ENV: "j"}, JUDGE_KEY_ENV, "j"),
        ("http://127.0.0.1:8000/v1", None, {MODEL_KEY_ENV: "m"}, REWRITE_KEY_ENV, None),
        ("https://api.openai.com/v1", None, {JUDGE_KEY_ENV: "j", "OPENAI_API_KEY": OPENAI_KEY}, JUDGE_KEY_ENV, "j"),
        ("http://127.0.0.1:8000/v1", "given", {MODEL_KEY_ENV: "m"}, MODEL_KEY_ENV, "given"),
        ("http://127.0.0.1:8000/v1", "env:OPENAI_API_KEY", {"OPENAI_API_KEY": OPENAI_KEY}, MODEL_KEY_ENV, OPENAI_KEY),
        ("http://u:p@127.0.0.1:8000/v1", None, {MODEL_KEY_ENV: "m", "OPENAI_API_KEY": OPENAI_KEY}, MODEL_KEY_ENV,
         None),
    ],
    ids=["local-never-openai", "openai-host", "openai-host-any-case", "openai-host-not-https", "lookalike-host",
         "model-own-variable", "judge-own-variable", "rewriter-not-the-model-key", "own-variable-first",
         "given-key-first", "openai-named-explicitly", "url-credentials-alone"],
)
def test_which_key_goes_to_which_url(keyless_env, url, key, env, key_env, expected) -> None:
    for name, value in env.items():
        keyless_env.setenv(name, value)
    assert api_key_for(url, key, env=key_env) == expected


def test_bad_key_options_are_clear_errors(keyless_env) -> None:
    with pytest.raises(ConfigError, match=r"\$GAEA_NOPE .*not set"):
        api_key_for("http://127.0.0.1:1/v1", "env:GAEA_NOPE")
    with pytest.raises(ConfigError, match=r"http://\*\*\*@127.0.0.1:1/v1: give the credentials either in the URL"):
        api_key_for("http://u:p@127.0.0.1:1/v1", "k")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@127.0.0.1:8000/v1?key=abc&api-version=2", "http://***@127.0.0.1:8000/v1?key=***&api-version=***"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("http://[::1]:9000/v1#frag", "http://[::1]:9000/v1"),
        ("not a url", "not a url"),
    ],
    ids=["userinfo-and-query", "plain", "ipv6-fragment", "not-a-url"],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redacted_settings_drop_keys_and_redact_nested_urls() -> None:
    config = {"api_key": "k", "judge_api_key": "j", "rewrite": ["http://u:p@h/v1?key=s", "m"],
              "osm": "overpass:https://u:p@h/api?key=s", "n": 3}
    assert redacted(config) == {"rewrite": ["http://***@h/v1?key=***", "m"], "osm": "overpass:https://***@h/api?key=***",
                                "n": 3}


def test_an_endpoint_keeps_its_query_apart_from_the_path() -> None:
    endpoint = split_endpoint("http://u:p%40ss@127.0.0.1:8000/v1/?key=s3cret")
    assert endpoint.url == "http://127.0.0.1:8000/v1"
    assert endpoint.params == (("key", "s3cret"),) and endpoint.auth == ("u", "p@ss")
    assert "s3cret" not in endpoint.shown and "p@ss" not in endpoint.shown


# ---------------------------------------------------------------------------------------------- real servers


def test_url_credentials_and_query_reach_the_server_and_nothing_else(keyless_env, caplog) -> None:
    keyless_env.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with recording_openai_server() as (base_url, requests), caplog.at_level(logging.DEBUG):
        url = base_url.replace("http://", "http://rw:rw-pass-3333@") + "?key=query-secret-4444"
        backend = OpenAIBackend(url)
        assert backend.generate([Message.user("Where?")]) == "Arezzo, Italy"
    assert [request.path for request in requests] == [
        "/v1/models?key=query-secret-4444", "/v1/chat/completions?key=query-secret-4444"
    ]
    assert {request.authorization for request in requests} == {"Basic cnc6cnctcGFzcy0zMzMz"}  # rw:rw-pass-3333
    assert backend.base_url == base_url
    assert not [secret for secret in SECRETS if secret in caplog.text]
    assert "HTTP Request: POST" in caplog.text  # httpx did log the request: redacted


@pytest.fixture(scope="module")
def servers():
    """The model server, the judge and the question rewriter, each recording what reached it."""
    with recording_openai_server("Arezzo, Italy") as model, recording_openai_server("10") as judge, \
            recording_openai_server("Where in the world was this photo taken?") as rewriter:
        yield {"model": model, "judge": judge, "rewriter": rewriter}


def _clear(servers: dict) -> None:
    for _, requests in servers.values():
        requests.clear()


def _authorizations(servers: dict, name: str) -> set[str | None]:
    return {request.authorization for request in servers[name][1]}


def _files_text(*folders: Path) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace")
                     for folder in folders for path in folder.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def built(servers, shared_data: Path, tmp_path_factory) -> tuple[Path, str]:
    """A `gaea data build` whose rewriter URL carries user:pass and ?key=, with OPENAI_API_KEY and the model's
    key in the environment; the dataset folder and what was logged."""
    out = tmp_path_factory.mktemp("creds") / "dataset"
    rewriter_url = servers["rewriter"][0].replace("http://", "http://rw:rw-pass-3333@") + "?key=query-secret-4444"
    with pytest.MonkeyPatch.context() as patch:
        for name in KEY_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        patch.setenv(MODEL_KEY_ENV, "model-key-1111")
        handler = _LogText()
        root = logging.getLogger()
        patch.setattr(root, "level", logging.DEBUG)
        root.addHandler(handler)
        try:
            code = gaea_main(["data", "build", "--images", str(shared_data / "photos"), "--out", str(out),
                              "--osm-file", str(shared_data / "osm" / "west-oakland.osm.bz2"), "--no-hf", "--quiet",
                              "--workers", "1", "--types", "mcq,tf", "--rewrite-base-url", rewriter_url,
                              "--rewrite-model", "stub"])
        finally:
            root.removeHandler(handler)
    assert code == 0
    return out, handler.text()


class _LogText(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


def test_the_rewriter_gets_its_url_credentials_and_no_other_key(servers, built) -> None:
    requests = servers["rewriter"][1]
    assert requests and {request.path.split("?")[0] for request in requests} == {"/v1/chat/completions"}
    assert {request.path.split("?")[1] for request in requests} == {"key=query-secret-4444"}
    assert _authorizations(servers, "rewriter") == {"Basic cnc6cnctcGFzcy0zMzMz"}


def test_a_build_writes_and_logs_no_credential(built) -> None:
    out, logged = built
    written = _files_text(out)
    assert "HTTP Request: POST" in logged  # every request to the rewriter was logged...
    assert not [secret for secret in SECRETS if secret in written + logged]  # ...and written down, redacted
    build = json.loads((out / "run.json").read_text())["fingerprint"]
    assert build["rewrite"][0].endswith("/v1?key=***") and build["rewrite"][0].startswith("http://***@127.0.0.1:")
    assert "http://***@127.0.0.1:" in (out / "README.md").read_text()


def _bench(dataset: Path, out: Path, servers: dict, *extra: str, model_url: str | None = None) -> list[str]:
    model_url = model_url or servers["model"][0]
    return ["eval", "bench", "--dataset", str(dataset), "--base-url", model_url, "--served-model", "stub",
            "--judge-base-url", servers["judge"][0] + "?key=judge-q-5555", "--judge-model", "gpt-4o", "--out",
            str(out), "--limit", "2", "--judge-attempts", "1", *extra]


@pytest.mark.parametrize(
    ("env", "options", "model_auth", "judge_auth"),
    [
        ({"OPENAI_API_KEY": OPENAI_KEY}, [], None, None),
        ({"OPENAI_API_KEY": OPENAI_KEY}, ["--judge-api-key", "env:OPENAI_API_KEY"], None, f"Bearer {OPENAI_KEY}"),
        ({"OPENAI_API_KEY": OPENAI_KEY}, ["--api-key", "model-key-1111"], "Bearer model-key-1111", None),
        ({MODEL_KEY_ENV: "model-key-1111", JUDGE_KEY_ENV: "judge-key-2222"}, [], "Bearer model-key-1111",
         "Bearer judge-key-2222"),
        ({}, ["--api-key", "model-key-1111", "--judge-api-key", "judge-key-2222"], "Bearer model-key-1111",
         "Bearer judge-key-2222"),
    ],
    ids=["openai-key-goes-nowhere-local", "judge-names-openai", "model-key-not-to-judge", "own-variables",
         "own-options"],
)
def test_eval_sends_each_server_its_own_key_and_records_none(
    keyless_env, servers, built, tmp_path: Path, env, options, model_auth, judge_auth
) -> None:
    for name, value in env.items():
        keyless_env.setenv(name, value)
    _clear(servers)
    out = tmp_path / "run"
    assert gaea_main(_bench(built[0], out, servers, *options)) == 0
    assert servers["model"][1] and servers["judge"][1]
    assert _authorizations(servers, "model") == {model_auth}
    assert _authorizations(servers, "judge") == {judge_auth}
    assert {request.path for request in servers["judge"][1]} == {"/v1/chat/completions?key=judge-q-5555"}
    assert not [secret for secret in SECRETS if secret in _files_text(out)]
    assert json.loads((out / "results.json").read_text())["config"]["judge_base_url"].endswith("/v1?key=***")


def test_eval_with_credentials_in_the_model_url_records_them_redacted(keyless_env, servers, built, tmp_path) -> None:
    keyless_env.setenv("OPENAI_API_KEY", OPENAI_KEY)
    _clear(servers)
    out = tmp_path / "run"
    model_url = servers["model"][0].replace("http://", "http://me:model-pass-6666@") + "?key=query-secret-4444"
    assert gaea_main(_bench(built[0], out, servers, model_url=model_url)) == 0
    assert _authorizations(servers, "model") == {"Basic bWU6bW9kZWwtcGFzcy02NjY2"}  # me:model-pass-6666
    assert {request.path for request in servers["model"][1]} == {"/v1/chat/completions?key=query-secret-4444"}
    assert not [secret for secret in SECRETS if secret in _files_text(out)]
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["base_url"].startswith("http://***@127.0.0.1:") and config["base_url"].endswith("/v1?key=***")


def test_the_readme_example_as_a_real_process_keeps_the_openai_key_off_the_local_server(
    servers, built, tmp_path: Path
) -> None:
    # README: a local model with an OpenAI judge. The "OpenAI" judge is a loopback server here, so the key is
    # named for it explicitly (for https://api.openai.com itself, OPENAI_API_KEY is picked up without it).
    _clear(servers)
    env = {key: value for key, value in os.environ.items() if key not in KEY_VARIABLES}
    env |= {"OPENAI_API_KEY": OPENAI_KEY, "GAEA_LOG_LEVEL": "INFO"}
    out = tmp_path / "run"
    command = [GAEA, *_bench(built[0], out, servers, "--judge-api-key", "env:OPENAI_API_KEY")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _authorizations(servers, "model") == {None}
    assert _authorizations(servers, "judge") == {f"Bearer {OPENAI_KEY}"}
    assert "HTTP Request" in result.stderr  # the requests were logged ...
    assert not [secret for secret in SECRETS if secret in result.stdout + result.stderr + _files_text(out)]  # ... clean


def test_an_overpass_url_with_credentials_is_recorded_redacted(tmp_path: Path) -> None:
    source = OverpassSource("https://u:p4ss@overpass.example/api/interpreter?key=s3cret", cache_dir=tmp_path)
    assert source.name == "overpass:https://***@overpass.example/api/interpreter?key=***"


def test_the_rewriter_has_a_key_of_its_own(keyless_env) -> None:
    from data_pipeline.rewrite import QuestionRewriter

    keyless_env.setenv(MODEL_KEY_ENV, "model-key-1111")
    keyless_env.setenv("OPENAI_API_KEY", OPENAI_KEY)
    record = QARecord("x", "a.jpg", "Is this photo from Italy?", "True", "TF")
    with recording_openai_server("Was this photo taken in Italy?") as (base_url, requests):
        QuestionRewriter(base_url, "stub").rewrite_record(record)
        keyless_env.setenv(REWRITE_KEY_ENV, "rw-variable")
        QuestionRewriter(base_url, "stub").rewrite_record(record)
        QuestionRewriter(base_url, "stub", api_key="rw-option").rewrite_record(record)
    assert [request.authorization for request in requests] == [None, "Bearer rw-variable", "Bearer rw-option"]
