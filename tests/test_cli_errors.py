"""Every CLI failure a user can meet: one line on stderr, the right exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from _cli_helpers import clean_env, run_cli, serve_process

KEY = "sk-right-KEY-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    with serve_process("--api-key", KEY) as url:
        yield url


@pytest.fixture(scope="module")
def slow() -> Iterator[str]:
    with serve_process("--ttfb-ms", "5000") as url:
        yield url


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("tls")
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert_file = directory / "cert.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    with serve_process("--certfile", str(cert_file)) as url:
        yield url


def check(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_rejected_key_401(keyed: str) -> None:
    result = run_cli("say", "hi", "--base-url", keyed, "--null", "--api-key", "sk-WRONG-secret")
    check(result, 3, "HTTP 401", "API key was rejected", "OPENAI_API_KEY")
    assert "WRONG-secret" not in result.stderr + result.stdout


def test_missing_key_401(keyed: str) -> None:
    check(run_cli("say", "hi", "--base-url", keyed, "--null"), 3, "HTTP 401")


def test_right_key_plays(keyed: str) -> None:
    result = run_cli("say", "hi", "--base-url", keyed, "--null", "--api-key", KEY, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "completed"


def test_wrong_base_url_404(served: str) -> None:
    wrong = served.removesuffix("/v1") + "/api"
    check(run_cli("say", "hi", "--base-url", wrong, "--null"), 3, "HTTP 404", "--base-url")


def test_server_message_400(served: str) -> None:
    result = run_cli("say", "hi", "--base-url", served, "--null", "--voice", "nobody")
    check(result, 3, "HTTP 400", "server said", "'nobody'")


def test_connection_refused() -> None:
    result = run_cli("say", "hi", "--base-url", "http://127.0.0.1:9/v1", "--null")
    check(result, 4, "cannot connect", "127.0.0.1:9")


def test_dns_failure() -> None:
    result = run_cli("say", "hi", "--base-url", "http://no-such-host.invalid/v1", "--null")
    check(result, 4, "cannot resolve", "no-such-host.invalid")


def test_timeout(slow: str) -> None:
    result = run_cli("say", "hi", "--base-url", slow, "--null", "--timeout", "0.5")
    check(result, 4, "no audio within 0.5 s of the request")


def test_tls_failure(self_signed: str) -> None:
    result = run_cli("say", "hi", "--base-url", self_signed, "--null")
    check(result, 4, "TLS failed", "certificate")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--speed", "9"], "speed"),
        (["--buffer-ms", "5000"], "buffer_ms"),
        (["--timeout", "0"], "timeout"),
        (["--ca-file", "/no/such/ca.pem"], "--ca-file"),
    ],
)
def test_bad_option_values(served: str, args: list[str], needle: str) -> None:
    check(run_cli("say", "hi", "--base-url", served, "--null", *args), 2, needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--chunk-size", "zero"], "whole number"), (["--format", "ogg"], "invalid choice")],
)
def test_unparseable_options_exit_2(args: list[str], needle: str) -> None:
    result = run_cli("say", "hi", "--null", *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_no_portaudio_writes_a_wav(served: str, tmp_path: Path) -> None:
    """Without PortAudio `say` still delivers the speech, as speech.wav, and says so."""
    code = (
        "import sys\n"
        "class NoPortAudio:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sounddevice':\n"
        "            raise OSError('PortAudio library not found')\n"
        "sys.meta_path.insert(0, NoPortAudio())\n"
        "from trio_tts_stream._cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "say", "Hello there", "--base-url", served, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "PortAudio is not installed" in result.stderr
    assert "libportaudio2" in result.stderr
    assert "speech.wav" in result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "completed"
    data = (tmp_path / "speech.wav").read_bytes()
    assert data[:4] == b"RIFF"
    assert (len(data) - 44) // 2 == report["frames_played"] > 0
