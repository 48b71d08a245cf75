"""Shell completion: the committed scripts in completions/ are what the CLI
prints today, and they complete commands and options in a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SOCKTOOL

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("socktool.bash", "_socktool", "socktool.fish")


def test_committed_completion_scripts_are_what_the_cli_generates(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-completions"), "--output", str(tmp_path)],
        check=True,
        timeout=60,
    )
    for name in SCRIPTS:
        committed = (ROOT / "completions" / name).read_text()
        assert committed == (tmp_path / name).read_text(), (
            f"completions/{name} is stale: run `python scripts/gen-completions` and commit the result"
        )


def test_zsh_script_starts_with_compdef_so_compinit_finds_it() -> None:
    assert (ROOT / "completions" / "_socktool").read_text().startswith("#compdef socktool\n")


@pytest.fixture(scope="module")
def path_with_socktool(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH on which `socktool` is this checkout's command (the scripts call it by name)."""
    if Path(SOCKTOOL[0]).name == "socktool":
        bin_dir = Path(SOCKTOOL[0]).parent
    else:  # installed without a console script: a shim
        bin_dir = tmp_path_factory.mktemp("bin")
        shim = bin_dir / "socktool"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m socktool "$@"\n')
        shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def bash_complete(path: str, *words: str) -> list[str]:
    """What Tab offers in bash after `words` (the last one being the word under the cursor)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = ROOT / "completions" / "socktool.bash"
    program = (
        f"source {str(script)!r} || exit 3\n"
        'complete -p socktool | grep -q -- "-F _socktool_completion" || exit 4\n'
        f"COMP_WORDS=({' '.join(repr(word) for word in words)})\n"
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "_socktool_completion socktool\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    env = {**os.environ, "PATH": path}
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", program], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_tcp_prefix_to_exactly_the_two_tcp_commands(path_with_socktool: str) -> None:
    assert sorted(bash_complete(path_with_socktool, "socktool", "tcp-")) == ["tcp-connect", "tcp-listen"]


def test_bash_completes_every_command_from_nothing(path_with_socktool: str) -> None:
    offered = bash_complete(path_with_socktool, "socktool", "")
    expected = {"tcp-connect", "tcp-listen", "udp-send", "udp-listen", "echo", "time-server", "portscan", "wait"}
    assert expected <= set(offered)


def test_bash_completes_a_commands_own_options(path_with_socktool: str) -> None:
    assert sorted(bash_complete(path_with_socktool, "socktool", "tcp-connect", "--hex")) == ["--hex", "--hex-input"]
    assert bash_complete(path_with_socktool, "socktool", "udp-listen", "--gro") == ["--group"]
    assert bash_complete(path_with_socktool, "socktool", "portscan", "127.0.0.1", "--require") == ["--require-open"]


@pytest.mark.parametrize(
    ("shell", "extra_env"),
    [("zsh", {}), ("fish", {"_TYPER_COMPLETE_FISH_ACTION": "get-args"})],
)
def test_zsh_and_fish_protocols_offer_the_two_tcp_commands(shell: str, extra_env: dict[str, str]) -> None:
    # What the zsh and fish scripts run on Tab (neither shell is needed to check the answer).
    env = {
        **os.environ,
        "_SOCKTOOL_COMPLETE": f"complete_{shell}",
        "_TYPER_COMPLETE_ARGS": "socktool tcp-",
        **extra_env,
    }
    result = subprocess.run(SOCKTOOL, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "tcp-connect" in result.stdout and "tcp-listen" in result.stdout
    assert "udp-send" not in result.stdout


def test_fish_completes_tcp_prefix_to_exactly_the_two_tcp_commands(path_with_socktool: str) -> None:
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    script = ROOT / "completions" / "socktool.fish"
    program = f'source "{script}"; complete -C "socktool tcp-"; echo ==; complete -C "socktool udp-listen --gro"'
    env = {**os.environ, "PATH": path_with_socktool}
    result = subprocess.run([fish, "--no-config", "-c", program], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    commands, options = result.stdout.split("==\n")
    assert sorted(line.split("\t")[0] for line in commands.splitlines()) == ["tcp-connect", "tcp-listen"]
    assert [line.split("\t")[0] for line in options.splitlines()] == ["--group"]
