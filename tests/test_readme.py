"""README.md: its trio example runs, and its two set-up commands parse as CI expects.

The example is taken from the README as it is now (the ``python`` block under "Use it
from trio"), pointed at the bundled test server and run as a script that plays on the
default device, which the audio rig makes a PulseAudio null sink (so this is an ``audio``
test: skipped without the rig, failed on CI). The commands are parsed by
``.ci/check_readme.py``, the script CI uses to run them.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import trio
from _audio_rig import ParecRecorder
from _cli_helpers import clean_env

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE_SECTION = "Use it from trio"
PACKAGE_PARENT = Path(tts.__file__).resolve().parent.parent


def _load_check_readme() -> ModuleType:
    path = ROOT / ".ci" / "check_readme.py"
    spec = importlib.util.spec_from_file_location("check_readme", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_readme", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check_readme = _load_check_readme()
ReadmeError: type[Exception] = check_readme.ReadmeError
extract_command: Callable[[str, str], str] = check_readme.extract_command
extract_block: Callable[[str, str, str], str] = check_readme.extract_block
check_test_command: Callable[[str], None] = check_readme.check_test_command
check_speech: Callable[[Path], object] = check_readme.check_speech
RUN_SECTION: str = check_readme.RUN_SECTION
TEST_SECTION: str = check_readme.TEST_SECTION


# --------------------------------------------------------------------------------------
# The trio example
# --------------------------------------------------------------------------------------


class _PointAt(ast.NodeTransformer):
    """Replace the value of every ``base_url=`` keyword argument with ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.replaced = 0

    def visit_keyword(self, node: ast.keyword) -> ast.keyword:
        if node.arg == "base_url":
            node.value = ast.Constant(self.url)
            self.replaced += 1
        return node


def pointed_at(source: str, base_url: str) -> str:
    """``source`` with its ``base_url=`` arguments replaced by ``base_url``."""
    tree = _PointAt(base_url).visit(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree))


def test_pointed_at_replaces_every_base_url() -> None:
    source = 'f(base_url="http://example.invalid/v1", x=1)\ng(base_url=URL)\n'
    assert pointed_at(source, "http://127.0.0.1:1/v1") == (
        "f(base_url='http://127.0.0.1:1/v1', x=1)\ng(base_url='http://127.0.0.1:1/v1')"
    )


def _printed_outcomes(stdout: str) -> set[tts.Outcome]:
    """The outcomes the script printed, as ``Outcome.X`` or as its value."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z_.]*", stdout))
    return {o for o in tts.Outcome if {str(o), o.value, o.name} & words}


async def test_readme_trio_example_plays_to_completion(
    audio_monitor: ParecRecorder, tmp_path: Path
) -> None:
    source = extract_block(README.read_text(encoding="utf-8"), EXAMPLE_SECTION, "python")
    async with open_test_server() as server:
        script = tmp_path / "readme_example.py"
        script.write_text(pointed_at(source, server.base_url), encoding="utf-8")
        # OPENAI_BASE_URL too, for an example that takes its server from the environment;
        # PYTHONPATH: the script imports the package under test, wherever it is.
        env = clean_env(OPENAI_BASE_URL=server.base_url, PYTHONPATH=str(PACKAGE_PARENT))
        with trio.fail_after(60):
            result = await trio.run_process(
                [sys.executable, str(script)],
                cwd=tmp_path,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        requests = list(server.requests)
    recording = audio_monitor.stop()
    stdout = result.stdout.decode()
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert _printed_outcomes(stdout) == {tts.Outcome.COMPLETED}, stdout
    assert requests, "the example never reached the test server"
    assert all(r.status == 200 for r in requests), [r.status for r in requests]
    # The default device played it: the null sink heard sound.
    assert recording.first_sound(threshold=300) >= 0, "the null sink heard only silence"


# --------------------------------------------------------------------------------------
# The two commands
# --------------------------------------------------------------------------------------


def _readme(run_block: str, test_block: str = "```sh\nbash .ci/run\n```\n") -> str:
    return (
        "# project\n\nIntro.\n\n## Set up and run\n\n"
        f"{run_block}\nSome words.\n\n## Set up and test\n\n{test_block}\n"
        "## Use it from trio\n\n```python\nprint('hi')\n```\n"
    )


def test_the_readme_holds_one_run_and_one_test_command() -> None:
    markdown = README.read_text(encoding="utf-8")
    run = extract_command(markdown, RUN_SECTION)
    test = extract_command(markdown, TEST_SECTION)
    assert run
    assert "\n" not in run
    check_test_command(test)  # what CI runs


def test_one_command() -> None:
    markdown = _readme('```sh\npip install -e . && python -m pkg say "Hi"\n```\n')
    assert extract_command(markdown, RUN_SECTION) == 'pip install -e . && python -m pkg say "Hi"'
    assert extract_command(markdown, TEST_SECTION) == "bash .ci/run"


def test_comments_blank_lines_and_continuations() -> None:
    block = "```sh\n# set up and speak\n\npip install -e . \\\n    && python -m pkg say Hi\n```\n"
    assert (
        extract_command(_readme(block), RUN_SECTION) == "pip install -e . && python -m pkg say Hi"
    )


def test_other_blocks_in_the_section_do_not_count() -> None:
    block = '```sh\npython -m pkg say "Hi"\n```\n\nIt prints:\n\n```text\nnote: ...\n```\n'
    assert extract_command(_readme(block), RUN_SECTION) == 'python -m pkg say "Hi"'


def test_a_heading_inside_a_block_does_not_end_the_section() -> None:
    block = '```sh\n## not a heading\npython -m pkg say "Hi"\n```\n'
    assert extract_command(_readme(block), RUN_SECTION) == 'python -m pkg say "Hi"'


@pytest.mark.parametrize(
    ("run_block", "message"),
    [
        ("```sh\napt-get install -y x\npip install -e .\n```\n", "holds 2 commands"),
        ("```sh\n# only a comment\n\n```\n", "holds 0 commands"),
        ("No block at all.\n", "has 0 shell blocks"),
        ("```sh\npip install -e .\n```\n\n```sh\npython -m pkg say Hi\n```\n", "has 2 shell"),
        ("```bash\npip install -e .\n```\n", "expected ```sh"),
        # Unclosed: the block runs on to the next fence, through the next section.
        ("```sh\npip install -e .\n", "holds 4 commands"),
    ],
)
def test_a_run_section_without_exactly_one_command_fails(run_block: str, message: str) -> None:
    with pytest.raises(ReadmeError, match=re.escape(message)):
        extract_command(_readme(run_block), RUN_SECTION)


def test_a_block_left_open_at_the_end_fails() -> None:
    with pytest.raises(ReadmeError, match="not closed"):
        extract_command("# p\n\n## Set up and run\n\n```sh\npip install -e .\n", RUN_SECTION)


def test_a_missing_or_repeated_section_fails() -> None:
    with pytest.raises(ReadmeError, match="no heading"):
        extract_command("# project\n\n## Usage\n\n```sh\nls\n```\n", RUN_SECTION)
    twice = _readme("```sh\nls\n```\n") + "\n## Set up and run\n\n```sh\nls\n```\n"
    with pytest.raises(ReadmeError, match="2 headings"):
        extract_command(twice, RUN_SECTION)


@pytest.mark.parametrize("command", ["nox -db uv", "bash .ci/run && nox -s docs", "sh .ci/run"])
def test_a_test_command_that_ci_does_not_run_fails(command: str) -> None:
    test = extract_command(_readme("```sh\nls\n```\n", f"```sh\n{command}\n```\n"), TEST_SECTION)
    with pytest.raises(ReadmeError, match="CI runs"):
        check_test_command(test)


def test_a_python_block_is_extracted_whole() -> None:
    assert extract_block(_readme("```sh\nls\n```\n"), EXAMPLE_SECTION, "python") == "print('hi')"
    with pytest.raises(ReadmeError, match="0 ```python blocks"):
        extract_block(_readme("```sh\nls\n```\n"), RUN_SECTION, "python")


# --------------------------------------------------------------------------------------
# What counts as speech
# --------------------------------------------------------------------------------------


def _write_wav(path: Path, samples: np.ndarray, rate: int = 24000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def test_speech_is_long_and_loud_enough(tmp_path: Path) -> None:
    t = np.arange(24000) / 24000
    tone = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    check_speech(_write_wav(tmp_path / "tone.wav", tone))
    with pytest.raises(ReadmeError, match="silent"):
        check_speech(_write_wav(tmp_path / "silence.wav", np.zeros(24000, np.int16)))
    with pytest.raises(ReadmeError, match="silent"):
        check_speech(_write_wav(tmp_path / "hiss.wav", (tone // 1000).astype(np.int16)))
    with pytest.raises(ReadmeError, match="expected speech"):
        check_speech(_write_wav(tmp_path / "short.wav", tone[:2400]))
    (tmp_path / "junk.wav").write_bytes(b"not a wav file")
    with pytest.raises(ReadmeError, match="not a readable"):
        check_speech(tmp_path / "junk.wav")
