"""The tables `distillrl bench speed` prints from its result (see speed.run_speed_bench)."""

from __future__ import annotations

from rich.table import Table


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def gibibytes(value: int) -> str:
    return f"{value / 2**30:.2f} GiB"


def step_table(result: dict) -> Table:
    setting = result["setting"]
    table = Table(title=f"bench speed --config {setting['name']}: {setting['description']} "
                        f"({result['rounds']} rounds x {result['steps']} steps, the first of each segment untimed)")  # fmt: skip
    for column in ("tool", "s/step", "completion tok/s", "peak memory"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    for tool, stats in result["tools"].items():
        table.add_row(tool, seconds(stats["step_seconds"]), rate(stats["completion_tokens_per_second"]),
                      gibibytes(stats["peak_memory_bytes"]))  # fmt: skip
    timed = ", ".join(str(stats["timed_steps"]) for stats in result["tools"].values())
    table.caption = f"median over {timed} timed steps; peak memory: {result['memory_measure']}"
    return table


def floor_table(result: dict) -> Table:
    """Median seconds per phase; '-' where the tool does not report a phase. distillrl's teacher phase is all of
    its scoring (teacher and, for the sampled loss, the old policy)."""
    table = Table(title="floor decomposition (median seconds per step)")
    for column in ("tool", "generation", "teacher forward", "student step", "sum", "generation tok/s"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    for tool, stats in result["tools"].items():
        phases = stats["phase_seconds"]
        known = [v for v in phases.values() if v is not None]
        total = sum(known) if len(known) == len(phases) else None
        table.add_row(tool, seconds(phases["generation"]), seconds(phases["teacher"]), seconds(phases["student"]),
                      seconds(total), rate(stats["generation_tokens_per_second"]))  # fmt: skip
    return table


def summary_lines(result: dict) -> list[str]:
    ratios = result["ratios"]
    lines = [
        f"distillrl (full) / TRL seconds per step: {ratios['distillrl_full_over_trl_step_seconds']:.2f}x "
        f"(per round: {', '.join(f'{r:.2f}' for r in ratios['distillrl_full_over_trl_per_round'])})",
        f"distillrl peak memory, full-vocabulary / sampled-token loss: {ratios['full_over_sampled_peak_memory']:.2f}x",
    ]
    for name, check in result["acceptance"].items():
        lines.append(f"acceptance {name}: {check['measured']:.3f} -> {'pass' if check['passed'] else 'FAIL'}"
                     if check["measured"] is not None else f"acceptance {name}: not measured -> FAIL")  # fmt: skip
    environment = result["environment"]
    lines.append(f"machine: {environment['cpu_count']} CPUs, {environment['torch_threads']} torch threads"
                 + (f", {environment['gpu']}" if environment["gpu"] else "")
                 + f"; load average (1 min) {result['load_average_before'][0]:.2f} before, "
                   f"{result['load_average_after'][0]:.2f} after; torch {environment['torch']}, "
                   f"transformers {environment['transformers']}, trl {environment['trl']}")  # fmt: skip
    return lines
