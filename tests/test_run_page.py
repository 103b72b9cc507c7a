"""report.html, one self-contained page per run, and the curves' panels chosen by what the run logs; the page opened
in headless Chromium (Playwright) with every network request refused."""

import base64
import html
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillrl import cli
from distillrl.core.errors import UserError
from distillrl.report.metrics import read_metrics
from distillrl.report.plots import training_curves_figure
from distillrl.report.run_page import latest_samples, write_run_page
from distillrl.report.samples import read_samples

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
UNTRUSTED = '<b>bold?</b> & </pre><script>document.title="pwned"</script> 3'  # a completion must show as text


def sample_row(step: int, decoding: str, prompt, completion: str, answer: str | None, reward: float, stopped=True,
               with_tokens: bool = False) -> dict:  # fmt: skip
    """One line of samples/step_NNNNNN.jsonl as the trainer writes it; per-token reverse KL on sampled rows."""
    tokens = [completion[i:i + 2] for i in range(0, len(completion), 2)] + [""]  # the end-of-turn piece decodes to ""
    kls = [round(0.05 + 0.9 * ((7 * i) % 5) / 4, 3) for i in range(len(tokens))]
    return {"step": step, "decoding": decoding, "prompt": prompt, "completion": completion, "answer": answer,
            "reward": reward, "length": len(tokens), "stopped": stopped,
            "reverse_kl": sum(kls) / len(kls) if with_tokens else None,
            "tokens": tokens if with_tokens else None, "token_reverse_kl": kls if with_tokens else None}  # fmt: skip


def write_samples(run_dir: Path, step: int) -> list[dict]:
    """A realistic evaluation's samples (greedy and sampled, arith prompts, one of them chat turns, one completion
    cut at max_new_tokens, one with HTML in it) after the step's rollouts, in samples/step_NNNNNN.jsonl; returns
    the evaluation's rows."""
    prompts = [("(4-8)-6=", "-10", "4-8=-4;-4-6=-10;#-10"), ("(8-2)+2=", "8", "8-2=6;6+2=8;#8"),
               ([{"role": "system", "content": "Answer after #."}, {"role": "user", "content": "(8+0)-(0-9)="}], "17",
                "8+0=8;0-9=-9;8--9=-1;#-1"), ("2*3=", "6", UNTRUSTED)]  # fmt: skip
    rows = []
    for decoding in ("greedy", "sampled"):
        for index, (prompt, answer, completion) in enumerate(prompts):
            right = completion.endswith("#" + answer)
            rows.append(sample_row(step, decoding, prompt, completion, answer, 1.0 if right else 0.0,
                                   stopped=index != 1, with_tokens=decoding == "sampled"))  # fmt: skip
    rollouts = [sample_row(step, "rollout", "1+1=", "1+1=2;#2", "2", 1.0, with_tokens=True)]
    folder = run_dir / "samples"
    folder.mkdir(exist_ok=True)
    (folder / f"step_{step:06d}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rollouts + rows))
    return rows


def records(method: str) -> list[dict]:
    """metrics.jsonl records of a short run of `method` (sft, grpo, opd), as the trainer logs them."""
    out = [{"step": 0, "eval/accuracy_greedy": 0.2, "eval/accuracy_sampled": 0.25, "eval/response_length": 3.8}]
    for step in range(1, 7):
        record = {"step": step, "train/loss": 2.0 / step, "train/response_length": 17.0 + step % 2,
                  "train/grad_norm": 9.0 - step, "train/lr": 1e-3, "train/reward": 1.0}  # fmt: skip
        if method == "grpo":
            record |= {"train/reward": 0.2 + 0.05 * step, "train/clip_fraction": 0.0}
        if method == "opd":
            record |= {"train/reverse_kl": 7.0 - step / 2, "train/reward": 0.25 + (step % 3) / 10}
        if step % 3 == 0:
            record |= {"eval/accuracy_greedy": 0.2 + step / 20, "eval/accuracy_sampled": 0.25, "eval/response_length": 4.0}
            if method == "opd":
                record["eval/reverse_kl"] = 7.0 - step / 3
        out.append(record)
    if method == "opd":
        out[0]["eval/reverse_kl"] = 7.2
    return out


def panel_titles(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes]


def test_curves_panels_follow_what_the_method_logs():
    sft = training_curves_figure(records("sft"), title="sft-run")
    assert panel_titles(sft) == ["Held-out accuracy", "Train loss", "Response length", "Gradient norm"]
    assert sft._suptitle.get_text() == "sft-run"  # SFT's reward (its own data, always 1) is flat: no panel
    grpo = training_curves_figure(records("grpo"))
    assert panel_titles(grpo) == ["Held-out accuracy", "Train loss", "Reward", "Response length", "Gradient norm"]
    teachers = {"teacher": {"eval/accuracy_greedy": 0.9, "eval/accuracy_sampled": 0.85}}
    opd = training_curves_figure(records("opd"), teachers)
    assert panel_titles(opd) == ["Held-out accuracy", "Train loss", "Divergence to the teacher", "Reward",
                                 "Response length", "Gradient norm"]  # fmt: skip
    accuracy, divergence = opd.axes[0], opd.axes[2]
    teacher_lines = [line for line in accuracy.get_lines() if line.get_label() == "teacher (greedy)"]
    assert len(teacher_lines) == 1 and list(teacher_lines[0].get_ydata()) == [0.9, 0.9]
    assert {line.get_label() for line in divergence.get_lines()} == {"train reverse_kl", "held-out reverse_kl (sampled)"}
    assert divergence.get_ylabel() == "nats / token" and opd.axes[4].get_ylabel() == "tokens per completion"
    assert all(ax.get_xlabel() == "step" for ax in opd.axes)


def test_a_long_series_is_drawn_under_its_moving_average():
    long = [{"step": s, "train/loss": float(s % 7), "train/grad_norm": 1.0} for s in range(1, 101)]
    (loss, _) = training_curves_figure(long).axes
    assert [line.get_label() for line in loss.get_lines()][-1] == "mean of 5 steps"  # w = max(2, 100 // 20)
    assert loss.get_lines()[-1].get_ydata()[4] == pytest.approx(sum(s % 7 for s in range(1, 6)) / 5)


def test_samples_are_read_back_without_a_cut_last_line_and_the_newest_are_chosen(tmp_path):
    rows = write_samples(tmp_path, 6)
    write_samples(tmp_path, 3)  # an earlier evaluation
    path = tmp_path / "samples" / "step_000006.jsonl"
    with path.open("a") as handle:
        handle.write('{"step": 6, "decoding": "sa')  # a kill mid-line
    assert read_samples(path)[1:] == rows and read_samples(path)[0]["decoding"] == "rollout"
    rollouts = [sample_row(7, "rollout", "2+2=", "2+2=4;#4", "4", 1.0)]
    (tmp_path / "samples" / "step_000007.jsonl").write_text(json.dumps(rollouts[0]) + "\n")  # a step after it
    assert latest_samples(tmp_path) == (6, rows, 7, rollouts)
    path.write_text("not json\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(UserError, match=r"step_000006.jsonl:1: not a JSON sample"):
        read_samples(path)


def test_no_run_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        write_run_page(tmp_path / "missing")
    result = CliRunner().invoke(cli.app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a distillrl run directory" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "report.html").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny real run (2 steps, evaluated at 0 and 2) with a samples file at its last evaluation."""
    from distillrl.config import TrainConfig
    from distillrl.run.trainer import train

    run_dir = tmp_path_factory.mktemp("page") / "tiny-opd"
    config = TrainConfig.model_validate({
        "seed": 0, "output_dir": str(run_dir), "tensorboard": False,
        "rollout": {"prompts_per_step": 4, "group_size": 2, "max_new_tokens": 24},
        "optim": {"steps": 2, "lr": 2e-3, "warmup_steps": 0, "schedule": "constant"},
        "eval": {"every": 2, "num_prompts": 8, "max_new_tokens": 24}, "checkpoint": {"every": 2, "keep": 1},
    })  # fmt: skip
    train(config, show_progress=False)
    write_samples(run_dir, 2)
    return run_dir


def test_the_page_holds_the_run_escaped_and_draws_curves_while_a_run_goes_on(finished_run, tmp_path):
    run_dir = tmp_path / finished_run.name
    shutil.copytree(finished_run, run_dir)
    page = write_run_page(run_dir).read_text()
    curves = base64.b64encode((run_dir / "curves.png").read_bytes()).decode()
    assert f"data:image/png;base64,{curves}" in page  # the finished run's curves.png
    assert "<script>" not in page and html.escape(UNTRUSTED) in page and "<details><summary>config.yaml" in page
    (run_dir / "curves.png").unlink()  # as while the run goes on: drawn from metrics.jsonl
    page = write_run_page(run_dir).read_text()
    (drawn,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(drawn)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob(".tmp-*")) and not re.search(r'(src|href)="(?!data:)', page)


def test_report_command_rebuilds_the_page(finished_run):
    result = CliRunner().invoke(cli.app, ["report", str(finished_run)])
    assert result.exit_code == 0, result.output
    assert str(finished_run / "report.html") in "".join(result.output.split())


def test_the_page_opens_in_a_browser_without_network(finished_run, tmp_path):
    """Acceptance: report.html in headless Chromium, every request but file: and data: aborted, shows the table
    with metrics.jsonl's numbers, the curves and the samples (escaped text, rewards)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    page_path = write_run_page(finished_run)
    evals = [r for r in read_metrics(finished_run) if "eval/accuracy_greedy" in r]
    started = time.perf_counter()
    requests, refused = [], []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("file:", "data:")):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", route)
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri())
            rows = page.locator("#before-after tr").all_inner_texts()
            assert re.split(r"\s+", rows[0].strip())[:2] == ["model", "greedy"]
            cells = {row.split("\t")[0]: row.split("\t")[1:] for row in rows[1:]}
            assert cells["student before"][:2] == [f"{evals[0]['eval/accuracy_greedy']:.3f}",
                                                   f"{evals[0]['eval/accuracy_sampled']:.3f}"]  # fmt: skip
            assert cells["student after"][:2] == [f"{evals[-1]['eval/accuracy_greedy']:.3f}",
                                                  f"{evals[-1]['eval/accuracy_sampled']:.3f}"]  # fmt: skip
            assert "teacher" in cells
            assert page.eval_on_selector("#curves", "img => img.complete && img.naturalWidth") > 0
            assert page.get_by_text(UNTRUSTED).first.is_visible() and page.title() != "pwned"
            assert page.locator("pre.completion b").count() == 0  # shown as text, not markup
            sample_rows = page.locator("tr.sample").all_inner_texts()
            assert any("4-8=-4;-4-6=-10;#-10" in row and "1.00" in row for row in sample_rows)
            assert any("8--9=-1;#-1" in row and "0.00" in row for row in sample_rows)
            assert page.locator(".fork").count() == 4 and page.locator(".fork .tok").count() > 20
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests and all(url.startswith(("file:", "data:")) for url in requests) and refused == []
    assert time.perf_counter() - started < 30
