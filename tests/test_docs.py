"""The documentation site builds cleanly and the front page stays a front page.

* ``mkdocs build --strict`` (mkdocs.yml at the repository root, pages in docs/, the API pages
  rendered by mkdocstrings from the package's source): any warning, e.g. a link to a missing
  page or anchor, fails the build.
* README.md is at most 12,000 characters, and every relative link in README.md and docs/*.md
  points to a file that exists (mkdocs checks links between pages; this also covers README.md
  and links from the pages to files outside docs/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_CHARS = 12_000

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def relative_links(text: str) -> list[str]:
    """Link targets of a Markdown text that are paths in the repository (no URL, no bare anchor),
    outside code blocks and code spans."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    return [target for target in LINK.findall(text) if not EXTERNAL.match(target)]


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_mkdocs_build_is_strict_clean(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    if result.returncode != 0:
        print(result.stdout)
        print(result.stderr)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reliability" / "index.html").is_file()


def test_readme_is_a_front_page():
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_MAX_CHARS, f"README.md has {size} characters (at most {README_MAX_CHARS}): move detail into docs/"


def test_every_relative_link_points_to_an_existing_file():
    files = markdown_files()
    assert len(files) > 10, files
    broken = []
    for path in files:
        for target in relative_links(path.read_text(encoding="utf-8")):
            file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
            if not file_part:
                continue
            if not (path.parent / file_part).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []


def test_link_finder_sees_links_and_skips_code():
    text = "[a](docs/x.md) ![img](p.png) [web](https://e.org) [here](#top) `[no](code.md)`\n```\n[no](fence.md)\n```\n"
    assert relative_links(text) == ["docs/x.md", "p.png"]


def test_no_machine_folders_in_readme_or_docs():
    """Paths of one machine (its temporary, root or home folders) mean nothing to a reader."""
    offenders = []
    for path in markdown_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"/(tmp|root|home)/", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
