"""The comparison pipeline with the activation cache: a second comparison sharing the teacher
recomputes only the student side, says so, and gets the same numbers as an uncached run."""

from __future__ import annotations

from pathlib import Path

import pytest

from circuitdiff.cache import ActivationCache
from circuitdiff.pipeline import run_comparison


@pytest.fixture(scope="module")
def new_student_dir(tmp_path_factory) -> Path:
    """Another checkpoint of the 'student' with the shared tokenizer: a new distillation run."""
    from tests.conftest import save_tiny_gpt

    return save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt-c"), seed=7, n_layer=3)


def _spec(teacher, student, **kw):
    return {"teacher": str(teacher), "student": str(student), "task": "ioi", "n_prompts": 8, "bootstrap": 0,
            "device": "cpu", **kw}


def test_second_comparison_reuses_the_teacher_side(tmp_path, tiny_gpt_dir, tiny_gpt_dir_b, new_student_dir):
    cache = ActivationCache(tmp_path / "cache")
    first = run_comparison(_spec(tiny_gpt_dir, tiny_gpt_dir_b), cache=cache)
    assert first.scan.method == "exact" and not first.scan.approximate
    assert first.scan.cache == {"teacher": "miss", "student": "miss"}

    second = run_comparison(_spec(tiny_gpt_dir, new_student_dir), cache=cache)
    assert second.scan.cache == {"teacher": "hit", "student": "miss"}
    assert second.influence["teacher"] == first.influence["teacher"]
    assert second.performance["teacher"] == first.performance["teacher"]

    uncached = run_comparison(_spec(tiny_gpt_dir, new_student_dir), cache=False)
    assert uncached.scan.cache == {"teacher": "disabled", "student": "disabled"}
    assert uncached.influence == second.influence
    assert uncached.similarity == second.similarity
    assert uncached.alignment.score == second.alignment.score


def test_corrupt_cache_entries_are_recomputed_not_fatal(tmp_path, tiny_gpt_dir, tiny_gpt_dir_b):
    cache = ActivationCache(tmp_path / "cache")
    first = run_comparison(_spec(tiny_gpt_dir, tiny_gpt_dir_b), cache=cache)
    for f in (tmp_path / "cache").glob("*/*.safetensors"):  # damage every stored tensor file
        data = bytearray(f.read_bytes())
        data[-3] ^= 0x55
        f.write_bytes(bytes(data))
    again = run_comparison(_spec(tiny_gpt_dir, tiny_gpt_dir_b), cache=ActivationCache(tmp_path / "cache"))
    assert again.scan.cache == {"teacher": "miss", "student": "miss"}
    assert again.influence == first.influence
    third = run_comparison(_spec(tiny_gpt_dir, tiny_gpt_dir_b), cache=ActivationCache(tmp_path / "cache"))
    assert third.scan.cache == {"teacher": "hit", "student": "hit"}  # the recomputed entries are valid


def test_attribution_result_is_labelled_approximate_with_agreement(tmp_path, tiny_gpt_dir, tiny_gpt_dir_b):
    res = run_comparison(_spec(tiny_gpt_dir, tiny_gpt_dir_b, scan="attribution", attribution_check=5), cache=False)
    assert res.scan.method == "attribution" and res.scan.approximate is True
    assert set(res.scan.agreement) == {"teacher", "student"}
    assert res.scan.agreement["teacher"]["n_checked"] == 5
    assert res.spec["attribution_check"] == 5
