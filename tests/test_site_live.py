"""Run it live: the Binder environment, the launch links and the .ipynb downloads."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jupytext
import nbformat
import pytest
import yaml
from booksite import (
    ROOT,
    book_config,
    load_ext,
    notebook_pages,
    parse_html,
    site_pages,
    toc_pages,
)
from packaging.requirements import Requirement
from packaging.version import Version

BINDER = ROOT / "binder"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
GITHUB_REPO = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")
# The placeholder README's "Publish your copy" shows for a reader's own fork.
PLACEHOLDER = "https://github.com/OWNER/NAME"


def _pins(path: Path) -> dict[str, Version]:
    """``name==version`` lines of a requirements file, by normalised name."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # every requirement is pinned exactly
        assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
        pins[re.sub(r"[-_.]+", "-", requirement.name.lower())] = Version(spec.version)
    return pins


def _binder_link(html: Path) -> str:
    links = [
        a["href"]
        for a in parse_html(html).select("a[href]")
        if a["href"].startswith(book_config()["launch_buttons"]["binderhub_url"])
    ]
    assert len(links) == 1, f"{html.name}: expected one Binder link, found {links}"
    return links[0]


def test_binder_requirements_pin_the_same_versions():
    ours, binder = _pins(ROOT / "requirements.txt"), _pins(BINDER / "requirements.txt")
    assert binder.keys() == ours.keys(), set(binder) ^ set(ours)
    differ = {n: (str(ours[n]), str(binder[n])) for n in ours if binder[n] != ours[n]}
    # The one allowed difference: Binder takes torch's CPU-only build of that release.
    assert differ == {"torch": (str(ours["torch"]), f"{ours['torch']}+cpu")}, differ


def test_binder_requirements_use_the_cpu_index_and_install_bnlib():
    text = (BINDER / "requirements.txt").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert f"--extra-index-url {TORCH_CPU_INDEX}" in lines
    assert "-e ." in lines
    assert "jupytext" in _pins(BINDER / "requirements.txt")


def test_binder_python_matches_the_projects():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_postbuild_opens_markdown_as_notebooks():
    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "postBuild must be executable"
    mode = subprocess.run(
        ["git", "ls-files", "--stage", "binder/postBuild"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    assert mode == "" or mode.startswith("100755"), f"git mode of postBuild: {mode}"
    assert '"markdown": "Jupytext Notebook"' in post_build.read_text()


def test_repository_url_is_set_in_one_place():
    url = book_config()["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    mentions = [
        str(path.relative_to(ROOT))
        for folder in ("binder", ".github", "_ext", "tests")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and url in path.read_text(errors="replace")
    ]
    assert mentions == [], f"the repository URL belongs in _config.yml only: {mentions}"
    assert (ROOT / "_config.yml").read_text().count(url) == 1


@pytest.mark.parametrize("page", notebook_pages())
def test_binder_link_opens_the_pages_own_file(site, page):
    config = book_config()
    url = urlsplit(_binder_link(site / f"{page}.html"))
    org_repo = urlsplit(config["repository"]["url"]).path.strip("/")
    branch = config["repository"]["branch"]
    assert url.path == f"/v2/gh/{org_repo}/{branch}", url.path
    (urlpath,) = parse_qs(url.query)["urlpath"]
    assert urlpath == f"lab/tree/{page}.md", urlpath
    assert (ROOT / urlpath.removeprefix("lab/tree/")).is_file()


def test_only_notebook_pages_have_binder_links(site):
    binderhub = book_config()["launch_buttons"]["binderhub_url"]
    for page in set(toc_pages()) - set(notebook_pages()):
        html = (site / f"{page}.html").read_text()
        assert binderhub not in html, f"{page} is no notebook but has a Binder link"


@pytest.mark.parametrize("page", notebook_pages())
def test_ipynb_download_is_the_executed_page(site, page):
    links = [
        a["href"] for a in parse_html(site / f"{page}.html").select("a[href$='.ipynb']")
    ]
    assert links, f"{page}: no .ipynb download link"
    for link in links:
        path = (site / f"{page}.html").parent / link
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        source = jupytext.read(ROOT / f"{page}.md")
        assert [c.source for c in notebook.cells if c.cell_type == "code"] == [
            c.source for c in source.cells if c.cell_type == "code"
        ]
        unexecuted = [
            c.source[:60]
            for c in notebook.cells
            if c.cell_type == "code" and c.execution_count is None
        ]
        assert not unexecuted, f"{link}: cells not executed at build time: {unexecuted}"


def test_pages_workflow_builds_tests_and_publishes_the_site():
    workflow = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    build = workflow["jobs"]["build"]
    runs = [step.get("run", "") for step in build["steps"]]
    assert "make book" in runs and any(".ci/run" in run for run in runs)
    assert "whl/cpu" in build["env"]["PIP_EXTRA_INDEX_URL"]
    uses = {step.get("uses", "").split("@")[0]: step for step in build["steps"]}
    pages = uses["actions/upload-pages-artifact"]
    assert pages["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" and "refs/heads/main" in deploy["if"]
    assert any("deploy-pages" in s.get("uses", "") for s in deploy["steps"])


def test_clone_commands_follow_the_repository_setting():
    url = book_config()["repository"]["url"]
    name = urlsplit(url).path.rstrip("/").split("/")[-1]
    for path in (ROOT / "README.md", ROOT / "intro.md"):
        text = path.read_text()
        assert f"git clone {url} && cd {name}" in text, f"{path.name}: no clone command"
        others = set(GITHUB_REPO.findall(text)) - {url, PLACEHOLDER}
        assert others == set(), f"{path.name} names another repository: {others}"


@pytest.mark.parametrize("page", site_pages())
def test_repository_and_launch_links_are_built_from_the_setting(site, page):
    config = book_config()
    url, branch = config["repository"]["url"], config["repository"]["branch"]
    binderhub = config["launch_buttons"]["binderhub_url"]
    hrefs = [a["href"] for a in parse_html(site / f"{page}.html").select("a[href]")]
    github = [h for h in hrefs if urlsplit(h).netloc == "github.com"]
    assert url in github, f"{page}: no repository button linking to {url}"
    assert [h for h in github if not h.startswith(url)] == []
    org_repo = urlsplit(url).path.strip("/")
    for href in (h for h in hrefs if h.startswith(binderhub)):
        assert urlsplit(href).path == f"/v2/gh/{org_repo}/{branch}", href


def test_set_repository_moves_the_book_and_fails_whole(tmp_path, monkeypatch):
    repository = load_ext("repository")
    files = {name: tmp_path / name for name in ("_config.yml", "README.md", "intro.md")}
    for name, path in files.items():
        path.write_text((ROOT / name).read_text())
    monkeypatch.setattr(repository, "CONFIG", files["_config.yml"])
    monkeypatch.setattr(
        repository, "CLONE_FILES", (files["README.md"], files["intro.md"])
    )
    before = {name: path.read_text() for name, path in files.items()}
    with pytest.raises(ValueError, match="expected a GitHub repository address"):
        repository.set_repository("https://gitlab.com/someone/fork")
    assert {n: p.read_text() for n, p in files.items()} == before

    fork = "https://github.com/someone/fork-of-the-book"
    changed = repository.set_repository(fork, branch="gh-main")
    assert set(changed) == set(files.values())
    config = yaml.safe_load(files["_config.yml"].read_text())
    assert config["repository"] == {
        **book_config()["repository"],
        "url": fork,
        "branch": "gh-main",
    }
    for name in ("README.md", "intro.md"):
        text = files[name].read_text()
        assert f"git clone {fork} && cd fork-of-the-book" in text
        assert set(GITHUB_REPO.findall(text)) - {PLACEHOLDER} == {fork}


def test_pages_workflow_points_the_book_at_its_own_repository():
    workflow = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["build"]["steps"]]
    (at,) = [i for i, run in enumerate(runs) if "_ext/repository.py" in run]
    assert "${{ github.repository }}" in runs[at]
    assert at < runs.index("make book"), "set the repository before building"
    assert "make pdf" in runs, "the published site links to the book's PDF"
