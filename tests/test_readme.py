"""The README's promises: its two commands come first, and its CLI examples run as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_two_commands_open_the_readme():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    assert [ln.split()[0:2] for ln in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_cli_examples_run(tiny_vlm_path, tmp_path):
    section = README.split("## Scoring from the command line")[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [ln.split("  #")[0].strip() for ln in block.strip().splitlines()]
    assert len(lines) >= 5
    for line in lines:
        argv = shlex.split(line.replace("/tmp/", f"{tmp_path}/").replace(".cache/models/tiny-idefics3", str(tiny_vlm_path)))
        assert argv[0] == ".venv/bin/lift-critic"
        p = subprocess.run([sys.executable, "-m", "serving.cli", *argv[1:]], capture_output=True, text=True,
                           cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert p.returncode == 0, f"{line}\n{p.stderr}"
