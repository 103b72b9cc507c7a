"""Benchmark results and REPORT.md: each experiment leaves tables, claims (paper's figure beside ours, with a
verdict) and plots in `bench/NAME.json`; the report is rendered from every result present."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path


def mean_std(values: list[float], digits: int = 3) -> str:
    """'mean +- std' over seeds (sample standard deviation; a single value has none)."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]  # fmt: skip
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Claim:
    claim: str  # what the paper says
    paper: str  # the paper's figure
    ours: str  # our figure
    reproduced: bool | None  # None: partly
    why: str  # what decides the verdict, what was tried


@dataclass
class ExperimentResult:
    name: str
    title: str
    setup: str
    seeds: list[int]
    quick: bool
    wall_seconds: float = 0.0
    tables: list[Table] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # paths relative to the report

    def save(self, out_dir: Path) -> Path:
        path = out_dir / "bench" / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> "ExperimentResult":
        data = json.loads(path.read_text())
        data["tables"] = [Table(**t) for t in data["tables"]]
        data["claims"] = [Claim(**c) for c in data["claims"]]
        return cls(**data)


def verdict(reproduced: bool | None) -> str:
    return {True: "reproduced", False: "not reproduced", None: "partly reproduced"}[reproduced]


def render_report(out_dir: Path, order: list[str]) -> Path:
    """Write out_dir/REPORT.md from the experiment results under out_dir/bench (in `order`)."""
    results = [ExperimentResult.load(out_dir / "bench" / f"{name}.json") for name in order
               if (out_dir / "bench" / f"{name}.json").exists()]  # fmt: skip
    total = sum(r.wall_seconds for r in results)
    lines = [
        "# distillrl: the papers' findings at laptop scale",
        "",
        "Written by `distillrl bench repro` on the built-in zoo (tiny Llama models trained from scratch on the CPU) "
        "and the built-in verifiable tasks. Accuracy is exact-match on 200 held-out prompts, greedy decoding "
        "(sampled accuracy at temperature 1 beside it where shown), the same for every method. Tables give the mean "
        "± sample standard deviation over seeds; a seed changes the training prompts and samples, not the models. "
        "Raw per-step metrics are in `raw/`.",
        "",
        f"Wall time on this machine: **{total / 60:.1f} min**, the sum of each experiment's latest run "
        "(`--only` reruns one; runs shared between experiments count once, where first run): "
        + ", ".join(f"{r.name} {r.wall_seconds / 60:.1f}" for r in results) + " (minutes).",
        "",
        "## Verdicts",
        "",
        "| experiment | claim | paper | ours | verdict |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for claim in result.claims:
            lines.append(f"| {result.title} | {claim.claim} | {claim.paper} | {claim.ours} | {verdict(claim.reproduced)} |")
    for result in results:
        scale = "quick (smoke test)" if result.quick else "full"
        lines += ["", f"## {result.title}", "", f"{result.setup} Seeds: {', '.join(map(str, result.seeds))}; {scale} "
                  f"run, {result.wall_seconds / 60:.1f} min.", ""]  # fmt: skip
        for table in result.tables:
            lines += [table.markdown(), ""]
        for plot in result.plots:
            lines += [f"![{result.title}]({plot})", ""]
        for claim in result.claims:
            lines += [f"- **{verdict(claim.reproduced)}**: {claim.claim} Paper: {claim.paper}. Ours: {claim.ours}. "
                      f"{claim.why}"]  # fmt: skip
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
