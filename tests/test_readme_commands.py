"""Acceptance: every command in README's command table runs as documented, at a small size, from a fresh working
directory (exit code, printed output and files written), and writes nothing outside the git-ignored `runs/` unless
told where to."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from test_cli import SMALL
from test_zoo import TINY as TINY_ZOO
from typer.testing import CliRunner

from distillrl import cli
from distillrl.bench import sweep
from distillrl.bench.experiments import EXPERIMENTS
from distillrl.bench.report import ExperimentResult
from distillrl.models import zoo_paths
from distillrl.zoo import recipes

ROOT = Path(__file__).resolve().parent.parent
README_TEXT = (ROOT / "README.md").read_text()


def readme_commands() -> set[str]:
    """The commands of README's command table: `distillrl` followed by its lowercase subcommand words."""
    section = README_TEXT.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `distillrl ([a-z ]+)", section, re.M)
    return {row.strip() for row in rows}


def invoke(*args: str):
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return result


def written_outside_runs(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != "runs"]


@pytest.fixture
def fresh_dir(tmp_path, monkeypatch):
    """A working directory with nothing in it, as after a fresh clone's `cd`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_demo(folder: Path, monkeypatch) -> None:
    result = invoke("demo", "--out", "runs/demo", *SMALL)
    summary = json.loads((folder / "runs/demo/summary.json").read_text())
    assert summary["steps"] == 2 and summary["teacher_accuracy"] > summary["student_accuracy_before"]
    assert set(summary["evaluations"]) == {"teacher", "student_before", "student_after"}
    assert (folder / "runs/demo/curves.png").stat().st_size > 10_000
    assert (folder / "runs/demo/final/model.safetensors").exists() and "student after" in result.output


def run_train(folder: Path, monkeypatch) -> None:
    result = invoke("train", str(ROOT / "configs/opd.yaml"), "--set", "output_dir=runs/opd", *SMALL)
    assert "trained model: runs/opd/final" in result.output
    assert (folder / "runs/opd/final/config.json").exists() and (folder / "runs/opd/final/tokenizer.json").exists()
    invoke("train", str(ROOT / "configs/opd.yaml"), "--set", "output_dir=runs/opd", *SMALL, "--resume")
    steps = [json.loads(line)["step"] for line in (folder / "runs/opd/metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]  # already finished: nothing more to do, nothing lost


def run_eval(folder: Path, monkeypatch) -> None:
    invoke("demo", "--out", "runs/demo", *SMALL)
    result = invoke("eval", "--model", "runs/demo", "--n", "8")  # a run directory stands for its final/ model
    assert "eval/accuracy_greedy" in result.output


def run_export(folder: Path, monkeypatch) -> None:
    invoke("demo", "--out", "runs/lora", *SMALL, "--set", "student.lora={r: 4}")
    result = invoke("export", "runs/lora", "--out", "runs/merged", "--merge")
    assert "runs/merged" in result.output and (folder / "runs/merged/config.json").exists()
    assert not (folder / "runs/merged/adapter_config.json").exists()


def run_zoo_build(folder: Path, monkeypatch) -> None:
    monkeypatch.setattr(recipes, "ZOO", TINY_ZOO)  # at a small size
    monkeypatch.setattr(cli, "ZOO", TINY_ZOO)
    result = invoke("zoo", "build")  # default arguments: runs/zoo, never the shipped models
    assert (folder / "runs/zoo/tiny-rl/model.safetensors").exists() and "runs/zoo/tiny-rl" in result.output
    monkeypatch.setattr(zoo_paths, "ZOO_DIR", folder / "runs/zoo")  # as if shipped
    result = invoke("zoo", "build", "--only", "tiny-rl", "--out", "elsewhere")  # its base is not in elsewhere/
    assert (folder / "elsewhere/tiny-rl/config.json").exists() and not (folder / "elsewhere/tiny-base").exists()
    assert "(from" + str(folder / "runs/zoo/tiny-base") in "".join(result.output.split())  # rich may fold a long path


def run_zoo_list(folder: Path, monkeypatch) -> None:
    assert "zoo:teacher" in invoke("zoo", "list").output


def run_control_teacher(folder: Path, monkeypatch) -> None:
    result = invoke("control", "teacher", "--env", "CartPole-v1", "--out", "runs/cartpole.zip", "--timesteps", "512")
    assert (folder / "runs/cartpole.zip").exists() and "mean return" in result.output


def run_control_distill(folder: Path, monkeypatch) -> None:
    result = invoke("control", "distill", str(ROOT / "configs/control/cartpole.yaml"), "--set", "output_dir=runs/cp",
                    "--set", "seeds=1", "--set", "iterations=1", "--set", "samples_per_iteration=128",
                    "--set", "curve_episodes=2", "--set", "eval_episodes=2", "--set", "methods=[{name: nll}]")  # fmt: skip
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "labelled states to reach 95% of the teacher: " in output and "None" not in output
    assert {p.name for p in (folder / "runs/cp").iterdir()} == {"results.json", "results.md", "returns.png"}


def run_bench_repro(folder: Path, monkeypatch) -> None:
    """The suite's one --quick run of everything (the lr sweep included): files, and the report's structure."""
    result = invoke("bench", "repro", "--quick")  # default arguments: a new runs/bench-repro/TIMESTAMP
    (out,) = (folder / "runs/bench-repro").iterdir()
    report = (out / "REPORT.md").read_text()
    assert str(out.relative_to(folder) / "REPORT.md") in result.output and "Generating" not in result.output
    lines = report.splitlines()
    assert lines[0].startswith("# ") and re.fullmatch(
        r"\*\*(\d+) reproduced, (\d+) partly reproduced, (\d+) not reproduced\*\* of (\d+) verdict lines\.", lines[2])
    counts = [int(n) for n in re.findall(r"\d+", lines[2])]
    verdicts = sum(report.count(f"| {v} |") for v in ("reproduced", "not reproduced", "partly reproduced"))
    assert counts[0] + counts[1] + counts[2] == counts[3] == verdicts
    assert verdicts == sum(len(ExperimentResult.load(out / "bench" / f"{n}.json").claims) for n in EXPERIMENTS)
    rules, table, results = (report.index(h) for h in ("## Verdict rules", "## Learning-rate sweep", "## Verdicts"))
    assert rules < table < results and "GRPO / OPD >= 5" in report[rules:table]
    assert report[table:results].count("**chosen**") == len(sweep.GRIDS)
    saved_sweep = json.loads((out / "bench" / sweep.FILE).read_text())
    assert saved_sweep["quick"] and set(saved_sweep["methods"]) == set(sweep.GRIDS)
    for name in EXPERIMENTS:
        saved = ExperimentResult.load(out / "bench" / f"{name}.json")
        assert saved.quick and saved.seeds == [0] and (saved.claims or saved.plots) and saved.wall_seconds > 0
        assert f"## {saved.title}" in report[results:]
        for plot in saved.plots:
            assert (out / plot).stat().st_size > 10_000
    raw = sorted((out / "raw").rglob("*.jsonl"))
    assert raw and all(json.loads(f.read_text().splitlines()[-1])["step"] == 2 for f in raw if "opd" in f.name)
    assert "title=" in (out / "forking_tokens.html").read_text() and "Wall time of the experiments on this machine" in report


def run_bench_speed(folder: Path, monkeypatch) -> None:
    result = invoke("bench", "speed", "--config", "tiny")  # default --out: runs/bench-speed/tiny.json
    saved = json.loads((folder / "runs/bench-speed/tiny.json").read_text())
    assert set(saved["tools"]) == {"distillrl (full)", "distillrl (sampled)", "TRL DistillationTrainer"}
    assert "floor decomposition" in result.output and "wrote runs/bench-speed/tiny.json" in result.output


def run_bench_memory(folder: Path, monkeypatch) -> None:
    result = invoke("bench", "memory", "--config", "tiny", "--lengths", "32", "--budget-length", "32", "--threads", "1")
    saved = json.loads((folder / "runs/bench-memory/tiny.json").read_text())
    assert len(saved["rows"]) == 4 + 4 and not any("error" in row for row in saved["rows"])
    assert (folder / "runs/bench-memory/tiny.png").stat().st_size > 0
    assert "checkpointing / plain at 32" in result.output.replace("\n", " ")


def run_inspect(folder: Path, monkeypatch) -> None:
    result = invoke("inspect", "--student", "zoo:student-base", "--teacher", "zoo:teacher", "--prompt", "3+(4*2)=",
                    "--samples", "3", "--max-new-tokens", "12")  # default --out: a new runs/inspect/forking-*.html
    [written] = (folder / "runs/inspect").glob("forking-*.html")
    assert f"wrote {written.relative_to(folder)}" in result.output
    page = written.read_text()
    assert 'class="legend"' in page and page.count('class="sample"') == 3
    marks = page.count('class="mark right"') + page.count('class="mark wrong"')
    assert marks == 3 + 2  # one per sample, two in the legend
    assert result.output.count("right") + result.output.count("wrong") == 3


def run_report(folder: Path, monkeypatch) -> None:
    invoke("train", str(ROOT / "configs/opd.yaml"), "--set", "output_dir=runs/opd", *SMALL)
    result = invoke("report", "runs/opd")
    page = (folder / "runs/opd/report.html").read_text()
    assert "runs/opd/report.html" in result.output and 'id="before-after"' in page and 'id="curves"' in page


RUNS = {
    "demo": run_demo, "train": run_train, "eval": run_eval, "export": run_export, "zoo build": run_zoo_build, "zoo list": run_zoo_list,
    "control teacher": run_control_teacher, "control distill": run_control_distill, "bench repro": run_bench_repro,
    "bench speed": run_bench_speed, "bench memory": run_bench_memory, "inspect": run_inspect, "report": run_report,
}  # fmt: skip


def test_every_command_of_the_readme_table_is_run_here():
    assert readme_commands() == set(RUNS)


@pytest.mark.parametrize("command", sorted(RUNS))
def test_readme_command_runs_and_writes_only_under_runs(command, fresh_dir, monkeypatch):
    RUNS[command](fresh_dir, monkeypatch)
    allowed = {"elsewhere"} if command == "zoo build" else set()
    assert [p for p in written_outside_runs(fresh_dir) if p.relative_to(fresh_dir).parts[0] not in allowed] == []


def test_runs_folder_is_ignored_by_git():
    """What the commands write by default (runs/...) leaves `git status` clean."""
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/zoo/teacher/model.safetensors"], cwd=ROOT)
    assert ignored.returncode == 0


def test_quick_repro_refuses_the_committed_results(fresh_dir):
    result = CliRunner().invoke(cli.app, ["bench", "repro", "--quick", "--out", "docs/results"])
    output = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2 and "--quick: refusing to write smoke-test results into docs/results" in output
    assert not (fresh_dir / "docs").exists()
