"""The shared argument checks: launcher flag messages, file decoding errors, traced poisoning."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropy_jax import _validate as check


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check.flag_int("batch_size", 0, lo=1), r"^--batch-size: must be an integer >= 1 \(got 0\)$"),
        (lambda: check.flag_int("seeds", 2.0, lo=1), r"^--seeds: must be an integer \(got 2.0\)$"),
        (lambda: check.flag_int("seeds", True, lo=1), r"^--seeds: must be an integer \(got True\)$"),
        (lambda: check.flag_int("k", 9, 1, 8), r"^--k: must be an integer in \[1, 8\] \(got 9\)$"),
        (lambda: check.flag_float("noise", 1.5, 0.0, 1.0), r"^--noise: must be a number in \[0, 1\] \(got 1.5\)$"),
        (lambda: check.flag_float("lr", 0.0, 0.0, lo_open=True), r"^--lr: must be a number > 0 \(got 0.0\)$"),
        (lambda: check.flag_float("p", 1.0, 0.0, 1.0, hi_open=True), r"^--p: must be a number in \[0, 1\) "),
        (lambda: check.flag_float("tau", float("nan")), r"^--tau: must be a finite number \(got nan\)$"),
        (lambda: check.flag_choice("loss", "l1", ("kl", "frobenius")), (r"^--loss: must be one of kl, frobenius "
                                                                        r"\(got 'l1'\)$")),
        (lambda: check.flag_ints("ms", ()), r"^--ms: needs at least one value \(a list of integers\) \(got \[\]\)$"),
        (lambda: check.flag_ints("ms", (3, 3)), r"^--ms: lists 3 twice \(got \[3, 3\]\)$"),
        (lambda: check.flag_ints("ms", "35"), r"^--ms: must be a list of integers"),
        (lambda: check.flag_floats("alphas", (1.0, -2.0), 0.0, lo_open=True), r"^--alphas: must be a number > 0"),
        (lambda: check.flag_choices("encodings", ("a", "x"), ("a", "b")), (r"^--encodings: must be one of a, b "
                                                                          r"\(got 'x'\)$")),
        (lambda: check.flag_parse("ranks", int, "abc"), r"^--ranks: invalid literal for int\(\)"),
    ],
)
def test_flag_errors_name_the_flag_and_the_value(call, message):
    with pytest.raises(check.ConfigError, match=message):
        call()


def test_flag_helpers_return_normalised_values(tmp_path):
    assert check.flag_int("n", np.int64(3), lo=1) == 3
    assert check.flag_ints("ms", [5, 2], lo=1) == (5, 2)
    assert check.flag_ints("size", (50, 50), lo=1, distinct=False) == (50, 50)
    assert check.flag_floats("levels", (0, 0.5), 0.0, 1.0) == (0.0, 0.5)
    assert check.flag_out_dir("out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing is created by a check
    (tmp_path / "f").write_text("")
    with pytest.raises(check.ConfigError, match="--out: .*f exists and is not a directory"):
        check.flag_out_dir("out", tmp_path / "f" / "run")


def test_positive_int_accepts_integer_scalars_only():
    assert check.positive_int("n", np.int32(4)) == 4
    assert check.positive_int("n", jnp.asarray(4)) == 4
    assert check.positive_int("n", 0, minimum=0) == 0
    with pytest.raises(TypeError, match="`n` must be an integer >= 1; got 2.5"):
        check.positive_int("n", 2.5)
    with pytest.raises(TypeError, match="`n` must be an integer"):
        check.positive_int("n", False)
    with pytest.raises(ValueError, match="`n` must be >= 1; got 0"):
        check.positive_int("n", 0)


def test_files_name_the_line_of_bad_bytes_and_bad_json(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_bytes(b'{\n  "x": 1,\n  "y": "\xe9t\xe9"\n}\n')
    with pytest.raises(ValueError, match=re.escape(f"{bad}, line 3: not UTF-8 text (byte 0xe9 at column 9)")):
        check.read_json(bad)
    bad.write_bytes(b'{\n  "x": 1,\n  "y": \n}\n')
    with pytest.raises(ValueError, match=re.escape(f"{bad}, line 4: invalid JSON (Expecting value at column 1)")):
        check.read_json(bad)
    bad.write_bytes(b'\xef\xbb\xbf{"x": 1}')  # a BOM is fine
    assert check.read_json(bad) == {"x": 1}
    with pytest.raises(check.ConfigError, match=r"^--resume: .*a.json, line 1: invalid JSON .* Delete it\.$"):
        bad.write_text("{")
        check.flag_json_file("resume", bad, "Delete it.")


def test_poison_under_jit():
    f = jax.jit(lambda x, b: check.poison(x * 2, b < 0))
    out = np.asarray(f(jnp.ones((2, 3)), jnp.array([[1.0], [-1.0]])))
    assert np.all(out[0] == 2.0) and np.all(np.isnan(out[1]))
    assert check.poison(jnp.arange(3), jnp.array(True)).dtype == jnp.result_type(float)  # ints become floats
