"""The Numba backend's caches, on both paths: cross-process hits, corruption recovery, debug log.

Numba path: generated module files plus Numba's own disk cache. Native path: object code under
`<cache>/native/`, checked by a SHA-256 header.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symgraph as sg

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import symgraph as sg
    x = sg.placeholder(("batch", 3), "float32", name="x")
    w = sg.variable(np.array([[1.0], [2.0], [3.0]], np.float32), name="w")
    f = sg.function([x], sg.tanh(x @ w) * 2.0, backend="numba")
    out = f(np.ones((2, 3), np.float32))
    if f._run.native:
        from symgraph.backends.numba_cpu import llvmjit
        print(json.dumps({"out": out.tolist(), "hits": llvmjit.STATS["loaded"],
                          "misses": llvmjit.STATS["compiled"], "native": True,
                          "kernel_hits": llvmjit.STATS["kernels loaded"],
                          "kernel_misses": llvmjit.STATS["kernels compiled"]}))
    else:
        stats = f._run.compiled.entry.stats
        print(json.dumps({"out": out.tolist(), "hits": sum(stats.cache_hits.values()),
                          "misses": sum(stats.cache_misses.values()),
                          "file": f._run.compiled.module.__file__, "native": False}))
""")


def run_script(cache_dir, debug=False, path="numba", **more):
    env = dict(os.environ, SYMGRAPH_CACHE_DIR=str(cache_dir), SYMGRAPH_NATIVE=path, **more)
    if debug:
        env["SYMGRAPH_DEBUG"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_second_process_hits_the_disk_cache_and_corruption_is_recovered(tmp_path):
    expected = (np.tanh(np.full((2, 1), 6.0)) * 2).tolist()
    first, _ = run_script(tmp_path)
    assert first["misses"] == 1 and first["hits"] == 0
    second, log = run_script(tmp_path, debug=True)
    assert second["hits"] == 1 and second["misses"] == 0  # no recompilation
    assert "disk cache" in log and "source cache hit" in log
    np.testing.assert_allclose(second["out"], expected, rtol=1e-6)
    # Truncate every compiled-code file: detected, removed and rebuilt, never a crash.
    for f in glob.glob(str(tmp_path / "numba" / "__pycache__" / "*.nbc")):
        with open(f, "r+b") as fh:
            fh.truncate(7)
    third, log = run_script(tmp_path, debug=True)
    np.testing.assert_allclose(third["out"], expected, rtol=1e-6)
    assert "corrupt" in log or "recompiling" in log
    # Corrupt the generated source itself: rewritten from the graph.
    with open(third["file"], "w") as fh:
        fh.write("garbage = (")
    fourth, log = run_script(tmp_path, debug=True)
    np.testing.assert_allclose(fourth["out"], expected, rtol=1e-6)
    assert "corrupt cached source rewritten" in log
    # Bytes that are not UTF-8 at all (was a raw UnicodeDecodeError)
    with open(third["file"], "wb") as fh:
        fh.write(b"\xd2\xff garbage")
    fifth, log = run_script(tmp_path, debug=True)
    np.testing.assert_allclose(fifth["out"], expected, rtol=1e-6)
    assert "corrupt cached source rewritten" in log


def test_native_object_cache_hits_and_damage_is_recovered(tmp_path):
    expected = (np.tanh(np.full((2, 1), 6.0)) * 2).tolist()
    first, _ = run_script(tmp_path, path="native")
    assert first["native"] and first["misses"] == 1 and first["hits"] == 0
    objects = glob.glob(str(tmp_path / "native" / "[!g]*.o"))  # gemm-*.o: own GEMM kernels
    assert len(objects) == 1
    second, log = run_script(tmp_path, debug=True, path="native")
    assert second["hits"] == 1 and second["misses"] == 0  # nothing compiled
    assert "object cache hit" in log
    np.testing.assert_allclose(second["out"], expected, rtol=1e-6)
    for damage in ("truncate", "flip"):
        with open(objects[0], "r+b") as fh:
            if damage == "truncate":
                fh.truncate(100)
            else:  # one flipped byte in the code: the checksum no longer matches
                fh.seek(-50, os.SEEK_END)
                byte = fh.read(1)
                fh.seek(-50, os.SEEK_END)
                fh.write(bytes([byte[0] ^ 0xFF]))
        out, log = run_script(tmp_path, debug=True, path="native")
        assert out["misses"] == 1 and "damaged cache file removed" in log
        np.testing.assert_allclose(out["out"], expected, rtol=1e-6)


def test_own_gemm_kernel_object_is_cached_and_damage_is_recovered(tmp_path):
    """The own GEMM kernel (native_gemm.py) is compiled once into `native/gemm-<key>.o`,
    read by the next process, and rebuilt when the file is damaged."""
    expected = (np.tanh(np.full((2, 1), 6.0)) * 2).tolist()
    first, _ = run_script(tmp_path, path="native", SYMGRAPH_GEMM="own")
    assert first["kernel_misses"] == 1 and first["kernel_hits"] == 0
    kernels = glob.glob(str(tmp_path / "native" / "gemm-*.o"))
    assert len(kernels) == 1
    second, _ = run_script(tmp_path, path="native", SYMGRAPH_GEMM="own")
    assert second["kernel_hits"] == 1 and second["kernel_misses"] == 0
    with open(kernels[0], "r+b") as fh:
        fh.seek(-40, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-40, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0xFF]))
    third, _ = run_script(tmp_path, path="native", SYMGRAPH_GEMM="own")
    assert third["kernel_misses"] == 1 and third["kernel_hits"] == 0  # removed, rebuilt
    np.testing.assert_allclose(third["out"], expected, rtol=1e-6)


def test_cache_dir_env_var_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAPH_NATIVE", "numba")
    monkeypatch.setenv("SYMGRAPH_CACHE_DIR", str(tmp_path))
    x = sg.placeholder((2,), "float64", name="x")
    f = sg.function([x], x * 3.0 + 1.0, backend="numba")
    np.testing.assert_array_equal(f(np.array([1.0, 2.0])), [4.0, 7.0])
    assert f._run.compiled.module.__file__.startswith(str(tmp_path))
    assert glob.glob(str(tmp_path / "numba" / "sg_*.py"))


def test_an_unusable_cache_dir_warns_and_still_compiles(tmp_path):
    """SYMGRAPH_CACHE_DIR naming a file raised NotADirectoryError from sg.function."""
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("")
    for path in ("numba", "native"):
        out, log = run_script(not_a_folder, path=path)
        np.testing.assert_allclose(out["out"], (np.tanh(np.full((2, 1), 6.0)) * 2).tolist(),
                                   rtol=1e-6)
        assert "cannot use SYMGRAPH_CACHE_DIR" in log and "for this process only" in log


def test_the_same_source_for_two_dtypes_is_two_compiled_codes(tmp_path, monkeypatch,
                                                             numba_path):
    """`-x`, argmax and a concatenate render the same source for float32 and float64: the
    native cache keyed only the source, so float64 ran float32 code (garbage)."""
    monkeypatch.setenv("SYMGRAPH_CACHE_DIR", str(tmp_path))
    xs = np.random.default_rng(0).standard_normal((4, 3))
    for dtype in ("float32", "float64"):
        x = sg.placeholder(("n", 3), dtype, name="x")
        for y in (-x, sg.argmax(x, 1), sg.concatenate([x, x], 1)):
            got = sg.function([x], y, backend="numba")(xs.astype(dtype))
            want = sg.function([x], y, backend="numpy")(xs.astype(dtype))
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_another_programs_object_file_under_a_key_is_removed_and_rebuilt(tmp_path):
    from symgraph.backends.numba_cpu import llvmjit

    path = str(tmp_path / "k1.o")
    llvmjit._write_cached(path, b"object code of program 2", "k2")  # a valid file of key k2
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert llvmjit._read_cached(path, "k2")[0] == b"object code of program 2"
    payload, why = llvmjit._read_cached(path, "k1")
    assert payload is None and "damaged" in why and not os.path.exists(path)


@pytest.mark.parametrize("path", ["native", "numba"])
def test_a_full_disk_still_compiles_and_leaves_no_half_file(tmp_path, path):
    """Every write into the cache folder fails as on a full disk (ENOSPC): the call still
    computes, and no temporary file is left there."""
    script = SCRIPT.replace("import json, sys", textwrap.dedent(f"""\
        import errno, json, os, sys, tempfile
        FULL = {str(tmp_path)!r}
        real_replace, real_mkstemp, real_open = os.replace, tempfile.mkstemp, open
        def replace(src, dst, *args, **kwargs):
            if str(dst).startswith(FULL):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_replace(src, dst, *args, **kwargs)
        def mkstemp(*args, **kwargs):
            fd, name = real_mkstemp(*args, **kwargs)
            if name.startswith(FULL):
                os.close(fd)
                os.unlink(name)
                raise OSError(errno.ENOSPC, "No space left on device")
            return fd, name
        os.replace, tempfile.mkstemp = replace, mkstemp
        """), 1)
    env = dict(os.environ, SYMGRAPH_CACHE_DIR=str(tmp_path), SYMGRAPH_NATIVE=path)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["out"], (np.tanh(np.full((2, 1), 6.0)) * 2).tolist(),
                               rtol=1e-6)
    assert not glob.glob(str(tmp_path / "**" / ".tmp-*"), recursive=True)
