"""On-disk caching of compiled kernels (``cache=True``).

Two promises:

* **read-only install**: imported from a directory nobody may write to (a
  system site-packages, a read-only container layer), with
  ``NUMBA_CACHE_DIR`` unset, numbaconv still computes and says nothing on
  stderr: Numba's in-tree cache location fails and it falls back to the
  per-user cache directory (``$XDG_CACHE_HOME/numba``), where a second
  process finds the kernels already compiled;
* ``NUMBA_CACHE_DIR`` is honoured: the cache files (``*.nbi`` index,
  ``*.nbc`` code) are written there.

Each scenario compiles in a fresh subprocess, so only the smallest ops are
used, in float64: ``conv_transpose1d`` without bias (one kernel, quicker to
compile than the forward one) for the read-only install, and the bias
gradient alone (the smallest kernel) for ``NUMBA_CACHE_DIR``.  The package is copied without its
``__pycache__`` and made read-only with ``chmod``; as root, where permission
bits do not stop writes, the copy is mounted read-only in a private mount
namespace (``unshare -m``) instead, or, where that is not permitted, the
cache directories are made impossible to create (a file named
``__pycache__`` in each package directory).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

import numbaconv

PKG = os.path.dirname(os.path.abspath(numbaconv.__file__))
NOT_READ_ONLY = 3   # child exit status: the package directory is writable

CHILD = textwrap.dedent("""
    import json, os, sys, tempfile
    import numpy as np
    expected_dir, check_read_only = sys.argv[1], sys.argv[2] == "1"
    import numbaconv
    pkg = os.path.dirname(os.path.abspath(numbaconv.__file__))
    if expected_dir:
        assert pkg == expected_dir, (pkg, expected_dir)
    if check_read_only:
        # The test Numba itself makes before it uses the in-tree cache.
        try:
            where = os.path.join(pkg, "cpu", "__pycache__")
            os.makedirs(where, exist_ok=True)
            tempfile.TemporaryFile(dir=where).close()
        except OSError:
            pass
        else:
            sys.exit(%(not_read_only)d)
    x = np.arange(12.0).reshape(1, 1, 12)
    w = np.array([[[1.0, -2.0, 0.5]]])
    if sys.argv[3] == "conv_transpose":
        y = numbaconv.conv_transpose1d(x, w)
        ref = np.convolve(x[0, 0], w[0, 0], mode="full")
        assert np.array_equal(y[0, 0], ref), (y, ref)
    else:   # the bias gradient alone: the smallest kernel, quickest to compile
        gy = np.arange(10.0).reshape(1, 1, 10)
        _, _, gb = numbaconv.conv1d_backward(gy, x, w, output_mask=(False, False, True))
        assert gb.tolist() == [45.0], gb
    from numba.core.registry import CPUDispatcher
    hits = misses = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("numbaconv.cpu"):
            continue
        for obj in vars(mod).values():
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
    print(json.dumps({"hits": hits, "misses": misses}))
""") % {"not_read_only": NOT_READ_ONLY}


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_") and k not in ("PYTHONPATH",
                                                        "XDG_CACHE_HOME")}
    env.update(extra)
    env["PYTHONWARNINGS"] = "default"   # surface any warning on stderr
    return env


def _cache_files(root):
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files
                  if f.endswith((".nbi", ".nbc"))]
    return found


def _run(args, env, cwd):
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def _verdict(proc):
    assert proc.returncode == 0, f"status {proc.returncode}\n{proc.stderr[-3000:]}"
    assert proc.stderr == "", f"unexpected output on stderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _can_unshare():
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True,
                               timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _make_read_only(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) & ~0o222)
        os.chmod(dirpath, 0o555)


def _make_writable(root):
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


@pytest.fixture
def read_only_install(tmp_path):
    """A read-only copy of the package: ``(site_dir, package_dir, runner)``,
    where ``runner(argv)`` is the command prefix that sees it read-only."""
    site = tmp_path / "site"
    dst = site / "numbaconv"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    prefix = []
    if os.geteuid() == 0:
        if _can_unshare():
            # a private mount namespace where the copy is a read-only mount
            script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" '
                      '&& exec "$@"')
            prefix = ["unshare", "-m", "sh", "-c", script, str(dst)]
        else:
            for dirpath, dirnames, _ in os.walk(dst):
                with open(os.path.join(dirpath, "__pycache__"), "w"):
                    pass
    _make_read_only(site)
    try:
        yield str(site), str(dst), prefix
    finally:
        _make_writable(site)


def test_read_only_install_falls_back_quietly(read_only_install, tmp_path):
    site, pkg, prefix = read_only_install
    xdg = tmp_path / "xdg"
    home = tmp_path / "home"
    xdg.mkdir()
    home.mkdir()
    env = _env(PYTHONPATH=site, XDG_CACHE_HOME=str(xdg), HOME=str(home))
    args = prefix + [sys.executable, "-c", CHILD, pkg, "1", "conv_transpose"]

    first = _run(args, env, cwd=str(tmp_path))
    if first.returncode == NOT_READ_ONLY:
        pytest.skip("cannot make a read-only install directory here")
    v1 = _verdict(first)
    assert v1["misses"] >= 1 and v1["hits"] == 0, v1
    # the fallback location holds the cache; the install is untouched
    assert _cache_files(xdg), "no cache files in the per-user cache directory"
    assert not _cache_files(pkg)

    # a second process loads the kernels from that cache instead of compiling
    v2 = _verdict(_run(args, env, cwd=str(tmp_path)))
    assert v2["hits"] >= 1 and v2["misses"] == 0, v2


def test_numba_cache_dir_is_honoured(tmp_path):
    cache = tmp_path / "numba-cache"
    env = _env(NUMBA_CACHE_DIR=str(cache))
    v = _verdict(_run([sys.executable, "-c", CHILD, "", "0", "bias"], env,
                      cwd=str(tmp_path)))
    files = _cache_files(cache)
    assert any(f.endswith(".nbi") for f in files), files
    assert any(f.endswith(".nbc") for f in files), files
    assert any("bias_grad" in os.path.basename(f) for f in files), files
    assert v["hits"] + v["misses"] >= 1


@pytest.fixture
def writable_copy(tmp_path):
    """A writable copy of the package, without compiled files: ``site`` dir."""
    site = tmp_path / "copy"
    shutil.copytree(PKG, site / "numbaconv", ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    return site


def test_cache_is_keyed_by_helpers_flags_and_target(writable_copy, tmp_path):
    """A kernel is compiled again, not loaded, after an edit of a module it
    only imports helpers from (``_index.py``), with another
    ``NUMBACONV_FASTMATH`` and for another CPU; each variant's cache stays
    usable beside the others."""
    site = writable_copy
    cache = tmp_path / "keyed-cache"
    args = [sys.executable, "-c", CHILD, str(site / "numbaconv"), "0", "bias"]

    def run(**extra):
        env = _env(PYTHONPATH=str(site), NUMBA_CACHE_DIR=str(cache), **extra)
        return _verdict(_run(args, env, cwd=str(tmp_path)))

    def compiled(v):
        return v["misses"] >= 1 and v["hits"] == 0

    def loaded(v):
        return v["hits"] >= 1 and v["misses"] == 0

    assert compiled(run())
    assert loaded(run())
    assert compiled(run(NUMBACONV_FASTMATH="0"))
    assert loaded(run(NUMBACONV_FASTMATH="0"))
    assert loaded(run())                          # the first variant is still there
    assert compiled(run(NUMBA_CPU_NAME="generic"))
    helper = site / "numbaconv" / "cpu" / "_index.py"
    helper.write_text(helper.read_text() + "\n# an edit\n")
    assert compiled(run())
    assert loaded(run())
