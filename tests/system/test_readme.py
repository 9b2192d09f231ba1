"""The README's shell examples run as written, against a real server, and read their digits."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from devtools import REPO_ROOT


def readme_curl_commands() -> list[str]:
    """Every `curl` command in the README's bash blocks, continuation lines joined."""
    readme = (REPO_ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.startswith("curl "):
                commands.append(command)
    return commands


def expected_digits(command: str) -> list[int | None]:
    """The digits of the example pictures a command sends, in order (examples/<name>-<digit>,
    examples/number-<number> for /read, None for examples/letter-<letter>: not a digit)."""
    return [
        None if name == "letter" else int(digit)
        for name, digit in re.findall(r"examples/([a-z]+)-(\w+)\.\w+", command)
    ]


def test_readme_has_the_examples():
    commands = readme_curl_commands()
    assert len(commands) >= 5
    assert all(expected_digits(c) for c in commands if "/v2/repository/" not in c)


@pytest.mark.parametrize("command", readme_curl_commands())
def test_readme_example_runs_as_written(server, command):
    local = command.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    output = subprocess.run(
        ["bash", "-c", local], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    answer = json.loads(output)
    if "/v2/repository/" in command:  # the model-repository examples: index, unload, load
        _check_repository_answer(command, answer)
        return
    expected = expected_digits(command)
    if "/read" in command:
        assert [int(r["number"]) for r in answer["readings"]] == expected, answer
        return
    if "outputs" in answer:  # Open Inference Protocol
        (digits,) = [o["data"] for o in answer["outputs"] if o["name"] == "digit"]
        assert digits == expected
        return
    results = answer.get("results", {answer.get("variant"): answer})
    for result in results.values():
        assert [p.get("digit") for p in result["predictions"]] == expected, result
        for prediction, digit in zip(result["predictions"], expected, strict=True):
            if digit is None:  # strict=true
                assert "does not look like one digit" in prediction["error"]
        if "return_input=true" in command:
            assert all(p["input"] for p in result["predictions"])


def _check_repository_answer(command: str, answer: object) -> None:
    if command.rstrip().endswith("/index") or "/index " in command:
        assert isinstance(answer, list)
        assert {row["state"] for row in answer} == {"serving"}
        return
    variant = re.search(r"/models/(\w+)/", command).group(1)
    loading = "/load" in command
    assert answer["name"] == variant and bool(answer["versions"]) is loading
