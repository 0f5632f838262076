"""The one setting that names the book's repository, and the text that follows it.

``repository.url`` (with ``repository.branch``) in ``_config.yml`` names the GitHub
repository. Jupyter Book builds the repository button and the Binder links from it.
Readers also meet the address in the clone command of README.md and of the intro's
"Run it"; this module writes it there from the setting, so that one command moves the
whole book to another repository::

    python _ext/repository.py https://github.com/OWNER/NAME [--branch main]

(``make repository URL=...`` runs it.) The Pages workflow runs it with the repository
it runs in, so a fork publishes a site that points to the fork.
tests/test_site_live.py checks that every address in the site and in those files is
the setting's.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"
# The files whose clone command names the repository (the intro's "Run it", README).
CLONE_FILES = (ROOT / "README.md", ROOT / "intro.md")
GITHUB_URL = re.compile(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?")
CLONE = re.compile(r"git clone (\S+) && cd ([\w.-]+)")
SETTING = re.compile(
    r"^(repository:\n(?:[ \t]+.*\n|[ \t]*#.*\n)*?[ \t]+url:[ \t]*)(\S+)", re.M
)
BRANCH = re.compile(
    r"^(repository:\n(?:[ \t]+.*\n|[ \t]*#.*\n)*?[ \t]+branch:[ \t]*)(\S+)", re.M
)


def check_url(url: str) -> tuple[str, str]:
    """Return (owner, name) of a GitHub repository's address.

    Raises
    ------
    ValueError
        If url is not ``https://github.com/OWNER/NAME``.
    """
    match = GITHUB_URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"expected a GitHub repository address https://github.com/OWNER/NAME, "
            f"got {url!r}"
        )
    return match.group(1), match.group(2)


def clone_command(url: str) -> str:
    """The clone command that README.md and the intro show for url."""
    owner, name = check_url(url)
    return f"git clone https://github.com/{owner}/{name} && cd {name}"


def configured_url(config: str | None = None) -> str:
    """The repository address that ``_config.yml`` sets."""
    text = CONFIG.read_text() if config is None else config
    match = SETTING.search(text)
    if match is None:
        raise ValueError(f"{CONFIG.name} sets no repository.url")
    return match.group(2)


def set_repository(url: str, branch: str | None = None) -> list[Path]:
    """Make url (and branch) the book's repository everywhere; return files changed.

    Every file is checked before any is written, so an error changes nothing.
    """
    command = clone_command(url)
    config = CONFIG.read_text()
    if SETTING.search(config) is None:
        raise ValueError(f"{CONFIG.name} sets no repository.url")
    new = {CONFIG: SETTING.sub(lambda m: m.group(1) + url.rstrip("/"), config)}
    if branch is not None:
        new[CONFIG] = BRANCH.sub(lambda m: m.group(1) + branch, new[CONFIG])
    for path in CLONE_FILES:
        text = path.read_text()
        if CLONE.search(text) is None:
            raise ValueError(f"{path.name} has no line 'git clone URL && cd NAME'")
        new[path] = CLONE.sub(command, text)
    changed = [path for path, text in new.items() if text != path.read_text()]
    for path in changed:
        path.write_text(new[path])
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="https://github.com/OWNER/NAME")
    parser.add_argument("--branch", help="the branch Binder opens (default: as set)")
    args = parser.parse_args(argv)
    try:
        changed = set_repository(args.url, args.branch)
    except ValueError as err:
        parser.error(str(err))
    for path in changed:
        print(f"updated {path.relative_to(ROOT)}")
    print(f"the book's repository is {configured_url()}")


if __name__ == "__main__":
    main()
