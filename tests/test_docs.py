"""The documentation site builds with `mkdocs build --strict` (no broken link, anchor or page left out of the nav),
its API page shows the docstrings, and the blocks that README.md and the docs pages share stay the same."""

import html
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import distillrl
from distillrl.config import TrainConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def plain_text(page: str) -> str:
    """A built page's text: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def first_sentence(docstring: str) -> str:
    """The docstring's first sentence as the page renders it: without Markdown's backticks, white space collapsed."""
    text = " ".join(docstring.replace("`", "").split())
    return re.split(r"(?<=[.;:])\s", text, maxsplit=1)[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strict_and_the_api_page_shows_the_docstrings(site):
    api = plain_text((site / "api" / "index.html").read_text())
    documented = [TrainConfig, load_config, distillrl.train, distillrl.evaluate, distillrl.TrainResult]
    squeezed = "".join(api.split())  # inline code renders as its own tag: compare without white space
    for obj in documented:
        assert "".join(first_sentence(inspect.cleandoc(obj.__doc__)).split()) in squeezed, obj.__name__
    assert "TrainConfig" in api and "load_config" in api


def test_every_page_renders_without_raw_markdown(site):
    pages = sorted(site.rglob("index.html"))
    assert len(pages) >= 15
    for page in pages:
        text = page.read_text()
        body = text.split('<article class="md-content__inner', 1)[-1].split("</article>", 1)[0]
        body = re.sub(r"<(pre|code)\b.*?</\1>", "", body, flags=re.S)  # code may hold anything
        assert not re.search(r"^#{1,6} |\n\|---|\]\([^)]*\.md\)", html.unescape(body), re.M), page


def block(text: str, name: str) -> str:
    return re.search(rf"<!-- readme:{name} -->\n(.*?)\n<!-- /readme:{name} -->", text, re.S)[1]


def test_readme_and_getting_started_share_the_demo_table_and_the_commands():
    readme = (ROOT / "README.md").read_text()
    started = (ROOT / "docs" / "getting-started.md").read_text()
    assert block(readme, "demo") == block(started, "demo")
    commands = [re.findall(r"^\| `distillrl ([a-z ]+)", text.split("## Commands", 1)[1].split("\n## ", 1)[0], re.M)
                for text in (readme, started)]  # fmt: skip
    assert commands[0] == commands[1] and len(commands[0]) >= 10
