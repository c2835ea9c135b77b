"""bin/ringfence is a shell/Python polyglot: both halves must stay intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "ringfence"


def test_is_valid_python():
    compile(SCRIPT.read_text(), str(SCRIPT), "exec")


def test_shell_line_reexecs_python_with_isolated_flags(tmp_path):
    lines = SCRIPT.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    # Run only the shell part with a fake interpreter next to the script that prints its argv.
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    copy = tmp_path / "ringfence"
    copy.write_text("\n".join(lines[:3]) + "\n")
    copy.chmod(0o755)
    out = subprocess.run([str(copy), "run", "--", "true"], capture_output=True, text=True)
    assert out.stdout.split() == ["-I", "-S", str(copy), "run", "--", "true"]


def test_shell_lines_fall_back_to_the_system_interpreter(tmp_path):
    # No python3 next to the script: /usr/bin/python3 runs it (the shell lines are also
    # Python: two string statements, so the copy does nothing and exits 0).
    copy = tmp_path / "ringfence"
    copy.write_text("\n".join(SCRIPT.read_text().splitlines()[:3]) + "\nprint('py')\n")
    copy.chmod(0o755)
    out = subprocess.run([str(copy)], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, "py\n")


def test_runs_the_cli_from_a_venv_layout(tmp_path):
    # <venv>/bin/ringfence next to <venv>/bin/python3, the package in <venv>/lib/.../site-packages
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    (site / "ringfence").symlink_to(Path(__file__).resolve().parents[2] / "ringfence")
    os.symlink(sys.executable, venv / "bin" / "python3")
    (venv / "bin" / "ringfence").write_text(SCRIPT.read_text())
    (venv / "bin" / "ringfence").chmod(0o755)
    out = subprocess.run(
        [str(venv / "bin" / "ringfence"), "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ringfence ")
