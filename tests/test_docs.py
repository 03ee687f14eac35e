"""The documentation site (docs/, mkdocs.yml) says what the code does: one runbook entry per
error code, the API reference names every public name, the CLI reference is the parser's
own help, and the built site resolves every link the code prints."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import fsm_exec
import fsm_exec.observe
import fsm_exec.testing
from fsm_exec import ERROR_CODES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNBOOK = DOCS / "runbook.md"


def gen_cli() -> ModuleType:
    """docs/gen_cli.py, the script that writes the CLI reference."""
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written_pages() -> list[Path]:
    """Every Markdown file a person writes: the docs (not the linked specs and diagrams),
    the specs, and the top-level files."""
    pages = [p for p in DOCS.rglob("*.md")
             if p.resolve().is_relative_to(DOCS.resolve())]
    return [*pages, *(ROOT / "specs").glob("*.md"), *ROOT.glob("*.md")]


def runbook_entries() -> dict[str, str]:
    """The runbook's entries by heading, each with its text."""
    text = RUNBOOK.read_text()
    return {m.group(1): m.group(2).strip() for m in
            re.finditer(r"(?ms)^## (.+?)\n(.*?)(?=^## |\Z)", text)}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as tox's docs environment builds it (--strict: a broken link, anchor
    or API entry fails the build)."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def anchors(html: Path) -> set[str]:
    """The ids a built page's links can point at."""
    return set(re.findall(r'\bid="([^"]+)"', html.read_text()))


def test_the_runbook_has_one_entry_per_code_in_order_titled_by_its_message() -> None:
    """Each EXEC code has its entry (## EXEC-NNN), in registry order, whose first words are
    the code's registry message."""
    entries = runbook_entries()
    codes = [h for h in entries if h.startswith("EXEC-")]
    assert codes == list(ERROR_CODES)
    for code, entry in ERROR_CODES.items():
        assert entries[code].startswith(f"*{entry.message}"), code


def test_the_docs_name_no_code_that_does_not_exist() -> None:
    """Every EXEC-NNN the README, the docs, the specs and the top-level files name (and every
    #exec-nnn anchor they link) is a code of the registry."""
    named: dict[str, Path] = {}
    for page in written_pages():
        for code in re.findall(r"\bEXEC-\d+\b", page.read_text(), re.I):
            named.setdefault(code.upper(), page.relative_to(ROOT))
    unknown = {c: str(p) for c, p in named.items() if c not in ERROR_CODES}
    assert not unknown
    assert set(named) >= {"EXEC-002", "EXEC-018"}


@pytest.mark.parametrize("module", [fsm_exec, fsm_exec.observe, fsm_exec.testing],
                         ids=lambda m: m.__name__)
def test_the_api_reference_lists_every_public_name(module: ModuleType) -> None:
    """docs/api.md has a ::: entry for every name in the package's __all__."""
    text = (DOCS / "api.md").read_text()
    entries = set(re.findall(r"(?m)^::: (\S+)$", text))
    missing = [n for n in module.__all__ if f"{module.__name__}.{n}" not in entries]
    assert not missing, f"add to docs/api.md: {missing}"


def test_the_cli_reference_is_the_parsers_help() -> None:
    """docs/cli.md is what docs/gen_cli.py writes from the parser now: a changed option
    makes it stale (run python docs/gen_cli.py)."""
    assert (DOCS / "cli.md").read_text() == gen_cli().render()


def test_the_cli_reference_has_a_section_per_command() -> None:
    """Every fsm-exec command has its section, with its usage line; so has each command's
    own command (fsm-exec lifecycle check)."""
    module = gen_cli()
    text = module.render()
    for name, sub in module._commands(module.parser()).items():
        assert f"## `fsm-exec {name}`\n\n```text\nusage: fsm-exec {name}" in text
        for own in module._commands(sub):  # fsm-exec lifecycle check, ...
            assert f"### `fsm-exec {name} {own}`\n\n```text\nusage: fsm-exec {name} {own}" \
                in text


def test_the_built_site_has_every_runbook_anchor(site: Path) -> None:
    """The built runbook page has an anchor per code, and for in-doubt and stuck."""
    ids = anchors(site / "runbook" / "index.html")
    assert {c.lower() for c in ERROR_CODES} | {"in-doubt", "stuck",
                                               "when-the-manager-halts"} <= ids


def test_the_built_api_reference_documents_every_public_name(site: Path) -> None:
    """The built API page has a heading for every public name (mkdocstrings found each)."""
    ids = anchors(site / "api" / "index.html")
    for module in (fsm_exec, fsm_exec.observe, fsm_exec.testing):
        missing = [n for n in module.__all__ if f"{module.__name__}.{n}" not in ids]
        assert not missing, (module.__name__, missing)


def test_the_changelog_page_is_the_changelog(site: Path) -> None:
    """The site's changelog page includes CHANGELOG.md (its Unreleased section)."""
    page = (site / "changelog" / "index.html").read_text()
    assert 'id="unreleased"' in page and "--8&lt;--" not in page


def built_target(site: Path, link: str) -> tuple[Path, str]:
    """The built page and anchor a source-tree link (``docs/runbook.md#exec-008``) is
    published at (``runbook/index.html``, ``exec-008``)."""
    path, _, anchor = link.partition("#")
    page = Path(path).relative_to("docs").with_suffix("")
    return site / page / "index.html", anchor


def test_every_codes_runbook_link_resolves_in_the_built_site(site: Path) -> None:
    """Each code's link (runbook_link, which every resolution ends with and status prints)
    names a page of the built site that has that anchor; so do status's other topics."""
    from fsm_exec.core.errors import runbook_link

    for topic in [*ERROR_CODES, "in-doubt", "stuck", "when-the-manager-halts"]:
        link = runbook_link(topic)
        assert (DOCS / link.partition("#")[0].removeprefix("docs/")).is_file()
        page, anchor = built_target(site, link)
        assert anchor in anchors(page), link
    for code, entry in ERROR_CODES.items():
        assert entry.resolution.endswith(f" Runbook: {runbook_link(code)}."), code


def heading_anchors(markdown: str) -> set[str]:
    """The anchors a Git host and MkDocs give a Markdown text's headings."""
    return {re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower().replace("`", ""))
            .replace(" ", "-") for line in markdown.splitlines() if line.startswith("#")}


def test_the_readme_is_the_first_minute_and_its_links_resolve() -> None:
    """The README stays short (about 150 lines) and every relative link in it names a file
    of the repository (and, into Markdown, a heading there)."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    links = re.findall(r"\]\(([^)#:]+)(?:#([^)]+))?\)", text)
    assert len(links) > 20
    for path, anchor in links:
        target = ROOT / path
        assert target.exists(), path
        if anchor:
            assert anchor in heading_anchors(target.read_text()), f"{path}#{anchor}"
