"""README.md stays short and true: at most 150 lines, every link resolves, every extra it names exists, and every
`edgevit` command of its tour runs as written (in a scratch folder holding the files the tour names: a real
Next-ViT-S checkpoint and a folder of photos)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _bash_lines(text: str) -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 150


def test_every_link_resolves():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#([^)]+))?\)", text)
    assert links
    for target, anchor in links:
        path = REPO / target
        assert path.exists(), target
        if anchor:  # a heading of that page, as GitHub makes anchors
            heads = [re.sub(r"[^\w\- ]", "", h.strip("# ").lower()).replace(" ", "-")
                     for h in path.read_text().splitlines() if h.startswith("#")]
            assert anchor in heads, (target, anchor, heads)


def test_every_extra_it_names_exists():
    import tomllib

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set(re.findall(r"'\.\[([\w-]+)\]'", _section("Install")))
    assert named and named <= extras, named - extras


def test_the_tour_runs_as_written(tmp_path):
    """Each `edgevit` line of "Five minutes", through a shell, in a folder with `my_finetuned.pth` (Next-ViT-S
    weights saved by edgevit) and `my_photos/` (five of the shipped evaluation pictures). Exit 0 for every line."""
    import torch

    from edgevit.models import create_model
    from edgevit.models.factory import embedded_data

    lines = [line for line in _bash_lines(_section("Five minutes")) if line.startswith("edgevit ")]
    assert len(lines) >= 6 and any("--dry-run" in line for line in lines)
    torch.save(create_model("nextvit_small").state_dict(), tmp_path / "my_finetuned.pth")
    photos = tmp_path / "my_photos"
    photos.mkdir()
    for picture in sorted(Path(embedded_data("nextvit_digits", "eval")).rglob("*.png"))[:5]:
        shutil.copy(picture, photos / picture.name)
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in lines:
        r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{line}\nexit {r.returncode}\n{(r.stdout + r.stderr)[-3000:]}"
    assert (tmp_path / "out" / "report.html").stat().st_size > 0
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("mine")] == []  # dry runs built nothing



def test_the_benchmarks_index_is_generated_and_every_cited_result_exists():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "index.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    texts = [README, *(REPO / "docs").glob("*.md"), *(REPO / "edgevit").rglob("*.py")]
    cited = {m for t in texts for m in re.findall(r"benchmarks/results/([\w.-]+\.\w+)", t.read_text())}
    assert cited
    assert sorted(c for c in cited if not (REPO / "benchmarks" / "results" / c).is_file()) == []
