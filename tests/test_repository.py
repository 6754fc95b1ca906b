"""The repository's wiring: one repository URL everywhere, the Makefile's test targets and the CI workflows."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
WORKFLOWS = ROOT / ".github" / "workflows"
# Files that may name the repository: notebooks (their install cell), prose, workflows, package and tools.
MENTIONING = ["*.md", "pyproject.toml", "notebooks/*.ipynb", "book/*.ipynb", "book/*.md", ".github/**/*.yml",
              "d2l_support/*.py", "tools/*", "benchmarks/*"]
# A GitHub repository named in a URL: github.com/owner/name, or Colab's colab.research.google.com/github/owner/name.
GITHUB_REPO = re.compile(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+)")
OTHER_REPOSITORIES = set()  # owner/name of third-party repositories the files may link to


def mentioning_files() -> list[Path]:
    """The files that may mention the repository, without duplicates."""
    return sorted({p for pattern in MENTIONING for p in ROOT.glob(pattern) if p.is_file()})


def test_the_configured_url_is_a_plain_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w-]+", REPOSITORY), REPOSITORY
    assert not REPOSITORY.endswith(".git")


def test_every_mention_of_a_repository_is_the_configured_one():
    ours = REPOSITORY.removeprefix("https://github.com/")
    drifted = []
    for path in mentioning_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        named = {name.removesuffix(".git") for name in GITHUB_REPO.findall(text)}
        drifted += [f"{path.relative_to(ROOT)}: {name}" for name in named - {ours} - OTHER_REPOSITORIES]
        installs = re.findall(r"git\+(https?://[^\s\"'@\\]+)", text)
        drifted += [f"{path.relative_to(ROOT)}: git+{url}" for url in installs if url != REPOSITORY]
    assert drifted == [], f"_config.yml sets the repository URL to {REPOSITORY}"


def test_every_notebook_installs_from_the_configured_url():
    notebooks = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("book/*.ipynb"))
    install = f'"d2l_support @ git+{REPOSITORY}\\"'  # as the notebook's JSON writes the quoted requirement
    assert notebooks and [p.name for p in notebooks if install not in p.read_text(encoding="utf-8")] == []


def _site_tests_without_a_site(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a copy of tests/test_site.py in a tree that has no built site."""
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "test_site.py", tmp_path / "tests")
    shutil.copy(ROOT / "_config.yml", tmp_path)
    shutil.copytree(ROOT / "tools", tmp_path / "tools")  # test_site.py reads the Chinese pages' setup from i18n
    environment = {k: v for k, v in os.environ.items() if k != "D2L_REQUIRE_SITE"} | env
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"],
                          cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)


def test_site_tests_skip_without_a_site_and_say_why(tmp_path):
    run = _site_tests_without_a_site(tmp_path)
    assert run.returncode in (0, 5) and "1 skipped" in run.stdout, run.stdout  # 5: no test ran, all skipped
    assert "the site is not built" in run.stdout


def test_site_tests_fail_without_a_site_when_required(tmp_path):
    run = _site_tests_without_a_site(tmp_path, D2L_REQUIRE_SITE="1")
    assert run.returncode != 0 and "D2L_REQUIRE_SITE=1 forbids skipping" in run.stdout, run.stdout


def pytest_line(target: str) -> str:
    """The pytest command `make TARGET` would run, as `make -n` prints it."""
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return next(line for line in dry.stdout.splitlines() if " -m pytest " in line)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_targets_run_the_right_tests():
    test, unit, gpu = pytest_line("test"), pytest_line("unit"), pytest_line("test-gpu")
    assert "D2L_REQUIRE_SITE=1" in test and " tests " in test and "--nbval " in test
    assert " tests " in unit and "--ignore=tests/test_site.py" in unit and "--nbval" not in unit
    assert "D2L_SCALE=full" in gpu and " tests " in gpu and "--ignore=tests/test_site.py" in gpu and "--nbval " in gpu


def workflow(name: str) -> dict:
    """One workflow file, parsed (YAML reads its `on:` key as True)."""
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def test_cpu_workflow_runs_the_test_command_and_colabs_python():
    cpu = workflow("cpu.yml")
    assert {"push", "pull_request"} <= set(cpu[True])
    steps = [step.get("run", "") for job in cpu["jobs"].values() for step in job["steps"]]
    assert any(run in ("make test", "bash .ci/run") for run in steps) and "make unit" in steps
    assert any(job["container"]["image"].startswith("python:3.12") for job in cpu["jobs"].values())


def test_gpu_workflow_runs_only_on_demand_or_on_schedule_on_the_gpu_runner():
    gpu = workflow("gpu.yml")
    assert set(gpu[True]) == {"workflow_dispatch", "schedule"}  # never a pull request's code on our machine
    job = next(iter(gpu["jobs"].values()))
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    runs = " ".join(step.get("run", "") for step in job["steps"])
    assert "make test-gpu" in runs and "make bench" in runs


def test_pages_workflow_deploys_the_built_book():
    pages = workflow("pages.yml")
    steps = [step for job in pages["jobs"].values() for step in job["steps"]]
    assert any(step.get("run") == "make book" for step in steps)
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact@")
               and step["with"]["path"] == "_build/html" for step in steps)
    assert any(step.get("uses", "").startswith("actions/deploy-pages@") for step in steps)
