"""`make test`'s first step: a machine without Chromium gets it installed, or one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from testkit.live_server import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "ensure_chromium.sh"


def tools(folder: Path, **fakes: str) -> dict[str, str]:
    """A PATH holding bash and the named fake commands (shell snippets), and nothing else."""
    folder.mkdir()
    for name in ("bash", "env"):
        (folder / name).symlink_to(shutil.which(name))
    for name, body in fakes.items():
        (folder / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (folder / name).chmod(0o755)
    return {"PATH": str(folder), "HOME": os.environ.get("HOME", "/tmp")}


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_with_chromium_present_it_does_nothing(tmp_path: Path) -> None:
    done = run(tools(tmp_path / "bin", chromium="exit 0", **{"apt-get": "exit 99"}))
    assert done.returncode == 0 and done.stderr == ""


def test_without_root_or_sudo_it_stops_with_one_line_naming_the_command(tmp_path: Path) -> None:
    done = run(tools(tmp_path / "bin", id="echo 1000", **{"apt-get": "exit 99"}))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "sudo apt-get install -y chromium" in line


def test_off_debian_it_says_to_install_the_distributions_package(tmp_path: Path) -> None:
    done = run(tools(tmp_path / "bin", id="echo 0"))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "not a Debian-like system" in line


def test_as_root_it_installs_with_apt(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    log = tmp_path / "apt.log"
    # The fake apt-get records its arguments and "installs" chromium into the PATH.
    env = tools(bin_dir, id="echo 0", **{"apt-get": f'echo "$@" >> {log}; '
                                                   f'printf "#!/bin/sh\\nexit 0\\n" > {bin_dir}/chromium; '
                                                   f'{shutil.which("chmod")} +x {bin_dir}/chromium'})
    done = run(env)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq" and "install" in calls[1] and "chromium" in calls[1].split()
