"""A built wheel carries the configs and assets, and its commands run from any directory.

The wheel is built offline from a copy of the source (the checkout's ``build/`` and
``*.egg-info`` stay untouched), installed into a fresh venv that sees this venv's
dependencies but not its editable xlam, and its console scripts run from an unrelated cwd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
ASSETS = ROOT / "xlam" / "assets"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _shipped(root: Path) -> set[str]:
    """Wheel paths expected for every config and asset file (git-ignored local/ excluded)."""
    expected = {
        f"xlam/conf/{p.relative_to(CONF).as_posix()}"
        for p in CONF.rglob("*")
        if p.is_file() and p.relative_to(CONF).parts[0] != "local"
    }
    expected |= {
        f"xlam/assets/{p.relative_to(ASSETS).as_posix()}"
        for p in ASSETS.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    return expected


def _build_wheel(src: Path, out: Path) -> Path:
    # --no-build-isolation --no-index: no network; setuptools comes from this venv.
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*pip, "-q", "-w", str(out), str(src)], cwd=src)
    (wheel,) = out.glob("xlam-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from the checkout, and the one built from its sdist."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(CONF, src / "conf", ignore=ignore)
    # symlinks=True keeps xlam/conf -> ../conf a link, as in the checkout
    shutil.copytree(ROOT / "xlam", src / "xlam", symlinks=True, ignore=ignore)
    assert (src / "xlam" / "conf").is_symlink(), "xlam/conf must be a symlink to ../conf"
    # a machine's local config must never be shipped
    (src / "conf" / "local" / "default.yaml").write_text("secret: do-not-ship\n")

    wheel = _build_wheel(src, tmp / "dist")
    sdist_dir = tmp / "sdist"
    build_sdist = "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])"
    _run([sys.executable, "-c", build_sdist, str(sdist_dir)], cwd=src)
    (sdist,) = sdist_dir.glob("xlam-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    (unpacked,) = (tmp / "unpacked").iterdir()
    return {"checkout": wheel, "sdist": _build_wheel(unpacked, tmp / "dist_sdist")}


@pytest.mark.parametrize("route", ["checkout", "sdist"])
def test_wheel_carries_configs_and_assets(wheels: dict[str, Path], route: str) -> None:
    names = set(zipfile.ZipFile(wheels[route]).namelist())
    missing = _shipped(ROOT) - names
    assert not missing, f"{wheels[route].name} ({route}) lacks {sorted(missing)}"
    local = [n for n in names if n.startswith("xlam/conf/local/")]
    assert not local, f"{wheels[route].name} ({route}) ships git-ignored {local}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheels[route]).read(entry_points).decode()
    for script in ("xlam-train", "xlam-data", "xlam-export"):
        assert f"{script} = " in scripts, scripts


def test_checkout_reads_top_level_conf() -> None:
    # The editable install must compose from conf/ itself, not a copy that could go stale.
    from xlam.utils.hydra import CONF_DIR

    assert CONF.resolve() == CONF_DIR
    assert (ROOT / "xlam" / "conf").resolve() == CONF.resolve()


def test_installed_wheel_runs_from_any_directory(wheels: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    bin_dir = venv / "bin"
    python = bin_dir / "python"
    # Install before the dependency link below, so pip never sees the editable xlam.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    _run([*pip, "--no-index", "-q", str(wheels["checkout"])], cwd=tmp_path)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_run([str(python), "-c", purelib], tmp_path).strip())
    # Dependencies come from this venv; its editable-install finder is a .pth hook that
    # only runs in a site dir, so this link brings the packages but not the checkout's xlam.
    (site / "_xlam_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "XLAM_ROOT")
    }
    env |= {"HF_HUB_OFFLINE": "1", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    probe = (
        "import json, xlam\n"
        "from xlam.utils.hydra import CONF_DIR, compose_config, to_container\n"
        "cfg = to_container(compose_config(['experiment=xlam_fc'], output_dir='run'))\n"
        "print(json.dumps({'xlam': xlam.__file__, 'conf': str(CONF_DIR),"
        " 'assets': str(xlam.ASSETS_DIR), 'tokenizer': cfg['model']['tokenizer_path'],"
        " 'sources': [s['path'] for s in cfg['data']['sources'].values()]}))\n"
    )
    found = json.loads(_run([str(python), "-c", probe], elsewhere, env).splitlines()[-1])
    installed = site / "xlam"
    assert Path(found["xlam"]).parent == installed, found
    assert Path(found["conf"]) == installed / "conf", found
    for path in [found["tokenizer"], *found["sources"]]:
        assert Path(path).is_relative_to(installed / "assets") and Path(path).exists(), found

    job = _run([str(bin_dir / "xlam-train"), "--cfg", "job", "trainer.max_steps=2"], elsewhere, env)
    assert "max_steps: 2" in job and "xlam.data.datamodule.TrajectoryDataModule" in job, job
    chat = installed / "assets" / "data" / "chat.jsonl"
    verify = [str(bin_dir / "xlam-data"), "verify", str(chat), "--out", "good.jsonl", "--strict"]
    _run(verify, elsewhere, env)
    assert (elsewhere / "good.jsonl").read_text().count("\n") == chat.read_text().count("\n")
    assert "run_dir" in _run([str(bin_dir / "xlam-export"), "--help"], elsewhere, env)
