"""Writes that cannot be redirected, and no two tasks in one file.

* a symbolic link given as ``--output-dir`` (to ``/`` or anywhere) is refused before any
  work: one line, exit 2, nothing written through it;
* a symbolic link where an output file goes is an error, never followed: the file it
  points to keeps its content;
* output files are written through a descriptor of the directory, whole (a temporary
  file renamed), 0600;
* every task id maps to its own file, also ids that collided before (``a/b`` and
  ``a b``, ``a_b`` and ``a\\b``, ids sharing their first 80 characters, ``Add`` and
  ``add`` on a file system that ignores case), and ``summary.json`` says which.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.files import OutputDir, UnsafePathError, task_file_names
from tests.helpers import run_scripted_cli
from tests.state.scripted_cli import ARGS, CATALOG_FILE, MODEL

ROOT = Path(__file__).resolve().parents[2]


# -- the output directory itself -------------------------------------------------------------


@pytest.mark.parametrize("target", ["/", "elsewhere"])
def test_an_output_dir_that_is_a_symbolic_link_is_refused_before_any_work(tmp_path, target):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "out"
    link.symlink_to("/" if target == "/" else elsewhere)
    existed = Path("/summary.json").exists()
    proc = run_scripted_cli(tmp_path, *ARGS, "-o", str(link), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a symbolic link" in lines[0] and str(link) in lines[0], proc.stderr
    assert list(elsewhere.iterdir()) == []
    assert Path("/summary.json").exists() == existed
    assert "Project proj-" not in proc.stdout  # refused before the run started
    assert not (tmp_path / "state").exists()


def test_a_symbolic_link_planted_as_summary_json_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "summary.json").symlink_to(victim)
    proc = run_scripted_cli(tmp_path, *ARGS, "-o", str(out), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2 and "symbolic link" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert victim.read_text() == "precious"


def test_a_symbolic_link_where_a_task_file_goes_is_an_error_never_followed(tmp_path):
    """Task file names are known only once the plan is: the link is met when the results
    are written, and the run ends with one line (exit 2) instead of writing through it."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "alpha.md").symlink_to(victim)
    proc = run_scripted_cli(tmp_path, *ARGS, "-o", str(out), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2
    assert "alpha.md: is a symbolic link; not followed" in proc.stderr, proc.stderr
    assert victim.read_text() == "precious"
    assert (out / "alpha.md").is_symlink()


# -- the writer ------------------------------------------------------------------------------


def test_writes_go_through_the_directory_descriptor_not_its_path(tmp_path):
    """Once opened, the directory is reached by its descriptor: swapping its path for a
    link to somewhere else between two writes changes nothing."""
    real, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    with OutputDir(real) as out:
        out.write("a.md", "first")
        real.rename(tmp_path / "moved")
        real.symlink_to(elsewhere)
        out.write("b.md", "second")
    assert sorted(os.listdir(tmp_path / "moved")) == ["a.md", "b.md"]
    assert list(elsewhere.iterdir()) == []


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    with OutputDir(tmp_path / "out") as out:
        out.write("x.md", "old content, longer than the new one")
        out.write("x.md", "new")
        assert out.remove("gone.md") is False
    assert (tmp_path / "out" / "x.md").read_text() == "new"
    assert os.listdir(tmp_path / "out") == ["x.md"]
    assert (tmp_path / "out" / "x.md").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["../escape.md", "a/b.md", "..", ".", ""])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    with OutputDir(tmp_path / "out") as out, pytest.raises(ValueError):
        out.write(name, "x")
    assert not (tmp_path / "escape.md").exists()


def test_removing_a_stale_file_does_not_follow_or_remove_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "t.md").symlink_to(victim)
    with OutputDir(tmp_path / "out") as out, pytest.raises(UnsafePathError):
        out.remove("t.md")
    assert victim.read_text() == "precious" and (tmp_path / "out" / "t.md").is_symlink()


# -- one file per task -----------------------------------------------------------------------

COLLIDING = ["a/b", "a b", "a_b", "a\\b", "x" * 80 + "-one", "x" * 80 + "-two", "Add", "add"]
"""Ids that shared a file before: the last writer won, silently."""


def test_ids_that_collided_get_one_file_each_in_a_real_run(tmp_path):
    project = {
        "project": "Colliding ids",
        "criteria": "ok",
        "tasks": [
            {"id": tid, "type": "summarization", "prompt": f"Summarise part {i}."} for i, tid in enumerate(COLLIDING)
        ],
    }
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(project))
    out = tmp_path / "out"
    proc = run_scripted_cli(
        tmp_path,
        "-f",
        str(path),
        "--model",
        MODEL,
        "--catalog",
        CATALOG_FILE,
        "--no-cache",
        "-q",
        "-o",
        str(out),
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert proc.returncode in (0, 1), proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    files = summary["files"]
    assert set(files) == set(COLLIDING)
    assert len({name.casefold() for name in files.values()}) == len(COLLIDING)
    on_disk = sorted(p.name for p in out.iterdir() if p.name != "summary.json")
    assert on_disk == sorted(files.values())
    for tid, name in files.items():  # each file holds its own task's output
        assert (out / name).read_text() == summary["results"][tid]["output"]
    assert len({summary["results"][t]["output"] for t in COLLIDING}) == len(COLLIDING)
    assert files["a_b"] == "a_b.md" and files["x" * 80 + "-one"].startswith("x" * 48 + "~")


IDS = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=120) | st.sampled_from(
    ["a/b", "a b", "a_b", "a\\b", "A_B", ".", "..", "-rf", ".hidden", "x" * 81, "x" * 80 + "y", "task~1"]
)


@given(ids=st.lists(IDS, min_size=1, max_size=12, unique=True), order=st.randoms(use_true_random=False))
@settings(max_examples=400, deadline=None)
def test_no_two_task_ids_share_a_file_name(ids, order):
    names = task_file_names(ids)
    assert set(names) == set(ids)
    assert len({n.casefold() for n in names.values()}) == len(ids)  # distinct, also ignoring case
    for name in names.values():
        assert name not in (".", "..") and "/" in name + "/" and "/" not in name and "\0" not in name
        assert not name.startswith((".", "-")) and len((name + ".py").encode()) <= 255
    shuffled = list(ids)
    order.shuffle(shuffled)
    assert task_file_names(shuffled) == names  # the same set of ids, the same files: a resume agrees
    for tid in ids:  # a plain id with no twin in case keeps its own name
        if (
            len(tid) <= 80
            and tid[0].isascii()
            and tid[0].isalnum()
            and all(c.isascii() and (c.isalnum() or c in "_.-") for c in tid)
            and sum(t.casefold() == tid.casefold() for t in ids) == 1
        ):
            assert names[tid] == tid
