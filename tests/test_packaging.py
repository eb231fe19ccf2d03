"""What a user gets from ``pip install heretic-tui``: every package listed, the styles shipped, and a wheel that runs.

The repository keeps its designed top level (core/, cli/, tui/, styles/) while pyproject.toml maps the folders to
the project's own namespace, heretic_tui; a folder missing from that list would be silently left out of the wheel,
and an editable install (what every other test uses) would never notice. So the wheel is built here, installed
into a fresh virtual environment, and run from a folder far from the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def project_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_in_the_wheel_list() -> None:
    setuptools = project_table()["tool"]["setuptools"]
    folders = {name: Path(folder) for name, folder in setuptools["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    listed = set(setuptools["packages"])
    assert found - listed == set(), "packages missing from [tool.setuptools] packages in pyproject.toml"
    assert {name for name in listed if name not in found and name not in folders} == set(), "listed but not found"


@pytest.mark.slow
def test_a_wheel_in_a_fresh_environment_runs_the_app_with_its_styles_and_the_headless_demo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(wheels.glob("heretic_tui-*.whl"))

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=300)
    python = fresh / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The dependencies come from the test environment's site-packages, added as a plain path: its .pth files
    # (among them the editable install's finder) are not processed, so heretic_tui can only come from the wheel.
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    (fresh_site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = dict(os.environ, HERETIC_RUNS_DIRECTORY=str(tmp_path / "runs"))
    check_app = textwrap.dedent('''
        import asyncio, sys
        import heretic_tui.tui
        from heretic_tui.tui.app import HereticApp
        assert heretic_tui.tui.__file__.startswith(sys.argv[1]), heretic_tui.tui.__file__

        POLL_SECONDS = 0.05

        async def main():
            app = HereticApp()
            async with app.run_test(size=(120, 40)) as pilot:
                deadline = asyncio.get_running_loop().time() + 60
                while not (shown := app.screen.query("#home-actions")) or not shown.first().size.width:
                    assert asyncio.get_running_loop().time() < deadline, "the home screen never laid out its actions"
                    await pilot.pause(POLL_SECONDS)
                print("home-actions width", shown.first().size.width)

        asyncio.run(main())
    ''')
    app = subprocess.run([str(python), "-c", check_app, str(fresh_site)], cwd=elsewhere, env=environment,
                         capture_output=True, text=True, timeout=300)
    assert app.returncode == 0, app.stdout + app.stderr
    assert "home-actions width 34" in app.stdout, app.stdout + app.stderr

    demo = subprocess.run([str(fresh / "bin" / "heretic-tui"), "demo", "--trials", "4", "--run-dir",
                           str(tmp_path / "demo-run")], cwd=elsewhere, env=environment, capture_output=True, text=True,
                          timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Demo finished." in demo.stderr and (tmp_path / "demo-run" / "model" / "config.json").is_file()
