"""The built wheel carries migrations/ and queries/ and works outside the source checkout."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_packaging_wheel_ships_migrations_and_queries(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, capture_output=True)
    wheel = next(dist.glob("trackstore-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("trackstore/_migrations/versions/0001") for n in names)
    shipped_queries = {Path(n).name for n in names if n.startswith("trackstore/_queries/") and n.endswith(".sql")}
    assert shipped_queries == {p.name for p in (ROOT / "queries").glob("*.sql")}
    # a clean venv that reuses this interpreter's installed dependencies, with the wheel on top
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import trackstore; print(trackstore.__file__)"], cwd=work,
                           check=True, capture_output=True, text=True).stdout
    assert str(env_dir) in where  # the installed wheel, not the checkout
    out = subprocess.run([str(env_dir / "bin" / "trackstore"), "upgrade", "--db", "s.duckdb"], cwd=work,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    from trackstore.db import head_revision

    assert f"to {head_revision()}" in out.stdout
    listing = subprocess.run([str(env_dir / "bin" / "trackstore"), "queries"], cwd=work,
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    for q in shipped_queries:
        assert Path(q).stem in listing.stdout
