"""pip install ./bindings/python works offline, into a fresh venv."""

import os
import subprocess
import sys

from conftest import BINDING, LIBRARY


def test_pip_install_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    py = venv / "bin" / "python"
    # Build from a copy so the source tree stays free of build/ and egg-info.
    src = tmp_path / "src"
    subprocess.run(["cp", "-r", str(BINDING), str(src)], check=True)
    for junk in ("tests",):
        subprocess.run(["rm", "-rf", str(src / junk)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HERALD_LIBRARY")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    p = subprocess.run([str(py), "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env, timeout=300, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:]
    script = (
        "import herald, os, sys\n"
        "assert 'site-packages' in herald.__file__, herald.__file__\n"
        "assert os.path.exists(os.path.join(os.path.dirname(herald.__file__), 'py.typed'))\n"
        "c = herald.Client(library=sys.argv[1], db_path=sys.argv[2], deliver=False)\n"
        "c.track('Installed', {'ok': True})\n"
        "print(c.stats()['accepted'], herald.library_version(sys.argv[1]))\n"
        "c.close()\n")
    p = subprocess.run([str(py), "-c", script, str(LIBRARY), str(tmp_path / "i.db")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=60, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout
    assert p.stdout.split() == ["1", "0.1.0"]
    # Without library=: HERALD_LIBRARY is honoured
    env2 = dict(env, HERALD_LIBRARY=str(LIBRARY))
    p = subprocess.run([str(py), "-c", "import herald; print(herald.library_version())"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env2,
                       timeout=60, cwd=str(tmp_path))
    assert p.returncode == 0 and p.stdout.strip() == "0.1.0", p.stdout


def test_system_loader_fallback(tmp_path):
    """Without library= or HERALD_LIBRARY, libherald.so.0 is found by the
    system loader (here through LD_LIBRARY_PATH, as after an install)."""
    env = {k: v for k, v in os.environ.items() if k != "HERALD_LIBRARY"}
    env["LD_LIBRARY_PATH"] = str(LIBRARY.parent)
    env["PYTHONPATH"] = str(BINDING)
    p = subprocess.run([sys.executable, "-c",
                        "import herald, sys; print(herald.library_version())"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=60, cwd=str(tmp_path))
    assert p.returncode == 0 and p.stdout.strip() == "0.1.0", p.stdout
    env.pop("LD_LIBRARY_PATH")
    env["HERALD_LIBRARY"] = str(tmp_path / "missing.so")
    p = subprocess.run([sys.executable, "-c", "import herald; herald.library_version()"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=60, cwd=str(tmp_path))
    assert p.returncode != 0 and "ConfigError" in p.stdout and "missing.so" in p.stdout
