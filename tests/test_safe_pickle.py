"""The restricted unpickler and safe .npy loader: real idtracker.ai files load, hostile ones don't."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from trackstore.errors import ParseError, UnsafeInputError
from trackstore.safe_pickle import load_npy, load_pickle

DATA = Path(__file__).parent / "data" / "idtrackerai"
MOVER = DATA / "MoveR_SampleData" / "2602_ISA3080_Low_5.npy"
DERIVED = DATA / "derived-idtrackerai_format-6.0.14"


def _npy_with_pickle(path: Path, payload: bytes) -> Path:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * ((-(10 + len(header) + 1)) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload)
    return path


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os
        return (os.system, (self.cmd,))


class _EvilExec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        import builtins
        return (builtins.exec, (self.code,))


class _EvilSubprocess:
    def __init__(self, argv):
        self.argv = argv

    def __reduce__(self):
        import subprocess
        return (subprocess.call, (self.argv,))


def test_safe_pickle_loads_real_npy_like_numpy():
    data, info = load_npy(MOVER)
    ref = np.load(MOVER, allow_pickle=True).item()  # trusted sample: reference only
    assert list(data) == list(ref)
    assert info.protocol == 3 and info.numpy_prefix == "numpy.core"
    for k in ref:
        assert type(data[k]) is type(ref[k])
    np.testing.assert_array_equal(data["trajectories"], ref["trajectories"])
    assert data["id_probabilities"] is None and data["frames_per_second"] == 25


def test_safe_pickle_loads_numpy2_npy_and_pickle_with_vlen_strings():
    data, info = load_npy(DERIVED / "trajectories.npy")
    assert info.protocol == 4 and info.numpy_prefix == "numpy._core"
    assert "builtins.str" in info.globals
    assert data["identities_labels"].dtype.metadata == {"vlen": str}
    pk, pinfo = load_pickle(DERIVED / "trajectories.pickle")
    assert list(pk) == list(data)
    np.testing.assert_array_equal(pk["trajectories"], data["trajectories"])


def test_safe_pickle_reads_plain_array_npy(tmp_path):
    a = np.random.default_rng(0).random((7, 3, 2))
    np.save(tmp_path / "a.npy", a)
    b, info = load_npy(tmp_path / "a.npy")
    assert info.protocol is None and info.shape == (7, 3, 2)
    assert b.tobytes() == a.tobytes()


def test_safe_pickle_reads_protocol_2_and_5(tmp_path):
    obj = {"a": np.arange(4.0), "b": np.float64(2.5), "c": [1, "x", None], "d": b"\x00\xff"}
    for proto in (2, 5):
        p = tmp_path / f"p{proto}.pickle"
        p.write_bytes(pickle.dumps(obj, protocol=proto))
        got, info = load_pickle(p)
        assert info.protocol == proto
        assert list(got) == list(obj) and got["d"] == obj["d"] and got["c"] == obj["c"]
        assert type(got["b"]) is np.float64 and got["a"].tobytes() == obj["a"].tobytes()


@pytest.mark.parametrize("make", [
    lambda marker: _Evil(f"touch {marker}"),
    lambda marker: _EvilExec(f"open({str(marker)!r}, 'w').close()"),
    lambda marker: _EvilSubprocess(["touch", str(marker)]),
], ids=["os_system", "builtins_exec", "subprocess"])
def test_safe_pickle_refuses_forbidden_global_without_running_it(tmp_path, make):
    marker = tmp_path / "pwned"
    evil = make(marker)
    bad_npy = _npy_with_pickle(tmp_path / "bad_forbidden_global.npy",
                               pickle.dumps({"trajectories": evil}, protocol=3))
    with pytest.raises(UnsafeInputError) as e:
        load_npy(bad_npy)
    assert "bad_forbidden_global.npy" in str(e.value)
    refused = str(e.value)
    assert any(name in refused for name in ("system", "exec", "subprocess.call"))
    bad_pickle = tmp_path / "bad_forbidden_global.pickle"
    bad_pickle.write_bytes(pickle.dumps([evil], protocol=4))
    with pytest.raises(UnsafeInputError, match="bad_forbidden_global.pickle"):
        load_pickle(bad_pickle)
    assert not marker.exists()


def test_safe_pickle_refuses_numpy_lib_and_codecs_other_than_latin1(tmp_path):
    bad = tmp_path / "bad_codecs.pickle"
    # protocol-0 text: _codecs.encode('x', 'rot13') is not a latin-1 bytes literal
    bad.write_bytes(b"c_codecs\nencode\n(Vx\nVrot13\ntR.")
    with pytest.raises(UnsafeInputError, match="bad_codecs.pickle"):
        load_pickle(bad)
    bad2 = tmp_path / "bad_numpy_lib.pickle"
    bad2.write_bytes(b"cnumpy.lib.npyio\nload\n(Vx\ntR.")
    with pytest.raises(UnsafeInputError, match="numpy.lib.npyio.load"):
        load_pickle(bad2)


def test_safe_pickle_truncated_npy_is_a_parse_error(tmp_path):
    raw = MOVER.read_bytes()
    bad = tmp_path / "bad_truncated.npy"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ParseError, match="bad_truncated.npy") as e:
        load_npy(bad)
    assert "truncated" in str(e.value) or "byte" in str(e.value)
    a = tmp_path / "bad_truncated_array.npy"
    np.save(a, np.zeros((10, 2, 2)))
    a.write_bytes(a.read_bytes()[:-8])
    with pytest.raises(ParseError, match="bad_truncated_array.npy.*truncated"):
        load_npy(a)


def test_safe_pickle_bad_header_and_caps(tmp_path):
    bad = tmp_path / "bad_magic.npy"
    bad.write_bytes(b"not numpy at all")
    with pytest.raises(ParseError, match="bad_magic.npy.*magic"):
        load_npy(bad)
    big = tmp_path / "bad_huge_shape.pickle"
    # _reconstruct with a 2**40-element shape must be refused before allocating
    big.write_bytes(b"\x80\x03cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x06\x00\x00\x00"
                    b"\x00\x00\x01\x85C\x01b\x87R.")
    with pytest.raises(ParseError, match="bad_huge_shape.pickle.*cap"):
        load_pickle(big, max_bytes=2**30)
    np.save(tmp_path / "ok.npy", np.zeros(100))
    with pytest.raises(ParseError, match="cap"):
        load_npy(tmp_path / "ok.npy", max_bytes=100)


def test_safe_pickle_refuses_persistent_ids(tmp_path):
    bad = tmp_path / "bad_persid.pickle"
    bad.write_bytes(b"\x80\x02X\x01\x00\x00\x00xQ.")
    with pytest.raises(UnsafeInputError, match="bad_persid.pickle.*persistent"):
        load_pickle(bad)
