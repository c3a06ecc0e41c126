"""The README and the --help texts cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from trackstore import db
from trackstore.cli import app
from trackstore.formats import list_formats
from trackstore.queries import list_queries

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(get_command(app).commands)


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _code_block(section: str) -> str:
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip()


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_every_command_has_help_and_is_in_the_readme(command):
    r = CliRunner().invoke(app, [command, "--help"])
    assert r.exit_code == 0
    doc = get_command(app).commands[command].help or ""
    assert len(doc.strip()) > 20 and "Example: trackstore" in doc
    assert f"trackstore {command}" in README


def test_docs_readme_formats_table_equals_the_registry():
    table = README.split("<!-- formats table", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert lines[1].startswith("|---")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    documented = {}
    for _desc, read, write, key, suffixes, extra in rows:
        documented[key.strip("`")] = {
            "read": read == "yes", "write": write == "yes",
            "suffixes": tuple(s.strip().strip("`") for s in suffixes.split(",")),
            "extra": extra.strip("`") or None,
        }
    actual = {name: {k: info[k] for k in ("read", "write", "suffixes", "extra")}
              for name, info in list_formats().items()}
    assert documented == actual


def test_docs_every_view_and_query_is_named_in_the_readme():
    for name in list(db.view_files("duckdb")) + [q.name for q in list_queries()]:
        assert f"`{name}`" in README, name


def test_docs_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install = _code_block(_section("Install"))
    test = _code_block(_section("Test"))
    assert f"python -m {install}" in " ".join(ci).replace("--disable-pip-version-check -q ", "")
    assert ci[-1] == test


def test_docs_demo_command_is_one_line_using_shipped_data():
    demo = _code_block(_section("Demo"))
    assert "\n" not in demo and "tests/data/" in demo
    path = re.search(r"ingest (\S+)", demo).group(1)
    assert (ROOT / path).is_dir()


def test_docs_server_settings_are_the_ones_pglocal_starts_with():
    """The README's ALTER SYSTEM block names exactly pglocal.SETTINGS, with the same values."""
    from trackstore import pglocal

    block = re.search(r"\*\*Server settings\.\*\*.*?```sql\n(.*?)```", README, re.S).group(1)
    documented = dict(re.findall(r"ALTER SYSTEM SET (\w+) = '?([^';]+)'?;", block))
    assert documented == pglocal.SETTINGS
