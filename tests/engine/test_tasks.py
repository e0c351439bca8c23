"""Task layer: text items -> token batches for a pair, with every rejection reported."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from circuitdiff.errors import DatasetError, IncompatibleModelsError, TaskTokenizationError
from circuitdiff.tasks import wordlists
from circuitdiff.tasks.custom import parse_items
from circuitdiff.tasks.dataset import build_task_data
from circuitdiff.catalogue import task_items
from circuitdiff.tasks.custom import resolve_dataset
from circuitdiff.settings import EngineSettings, use


@pytest.fixture(scope="module")
def tok(tiny_gpt_dir):
    return AutoTokenizer.from_pretrained(tiny_gpt_dir)


def _pair(tok):
    return {"teacher": tok, "student": tok}


def test_ioi_batches_line_up(tok):
    items = task_items("ioi", {}, 10, seed=0)
    data = build_task_data(items, _pair(tok), name="ioi", bos="prepend")
    v = data.view("teacher")
    assert data.n_prompts == 10 and data.rejected == []
    assert v.clean.tokens.shape == v.corrupted.tokens.shape
    assert (v.clean.tokens[:, 0] == tok.bos_token_id).all()
    for i, it in enumerate(data.items):
        ids = [tok.bos_token_id] + tok(it.prompt, add_special_tokens=False)["input_ids"]
        n = len(ids)
        assert v.clean.tokens[i, :n].tolist() == ids
        assert v.clean.attention_mask[i].sum() == n and v.corrupted.attention_mask[i].sum() == n
        assert v.clean.end_pos[i] == n - 1  # the final "to"
        assert tok.decode([v.clean.tokens[i, n - 1].item()]) == " to"
        assert v.answer_ids[i] == tok(" " + it.answer, add_special_tokens=False)["input_ids"][0]
        assert tok.decode([v.distractor_ids[i].item()]) == " " + it.distractor
    assert len(data.dataset_sha256) == 64


def test_bos_none_keeps_the_prompt_as_is(tok):
    items = task_items("sequence", {"members": "numwords"}, 4, seed=0)
    data = build_task_data(items, _pair(tok), name="sequence", bos="none")
    v = data.view("student")
    assert not data.bos
    assert tok.decode(v.clean.tokens[0].tolist()) == items[0].prompt
    assert tok.decode([v.answer_ids[0].item()]) == " " + items[0].answer


def test_qa_world_facts_use_the_world_table(tok):
    items = task_items("qa", {"facts": "world"}, 6, seed=0)
    world = dict(wordlists.WORLD_FACTS)
    assert all(world[it.meta["country"]] == it.answer for it in items)
    data = build_task_data(items, _pair(tok), name="qa")
    assert data.n_prompts == 6


def test_dataset_digest_identifies_the_prompts(tok):
    a = build_task_data(task_items("ioi", {}, 6, seed=0), _pair(tok), name="ioi")
    b = build_task_data(task_items("ioi", {}, 6, seed=0), _pair(tok), name="ioi")
    c = build_task_data(task_items("ioi", {}, 6, seed=1), _pair(tok), name="ioi")
    assert a.dataset_sha256 == b.dataset_sha256 != c.dataset_sha256


JSONL_OK = [
    '{"prompt": "When Mary and John went to the store, John gave a drink to", "answer": "Mary", "distractor": "John", '
    '"corrupted_prompt": "When Alice and Bob went to the store, Tom gave a drink to"}',
    '{"prompt": "When Anna and Paul went to the park, Paul gave a book to", "answer": "Anna", "distractor": "Paul"}',
    '{"prompt": "When Kate and Mark went to the school, Mark gave a gift to", "answer": "Kate", "distractor": "Mark"}',
    '{"prompt": "When Lisa and Jack went to the house, Jack gave a ring to", "answer": "Lisa", "distractor": "Jack"}',
]


def test_custom_dataset_rejects_multi_token_answers_and_length_mismatch_with_reasons(tok):
    lines = JSONL_OK + [
        # "Maryanne" is not one token of this vocabulary
        '{"prompt": "When Amy and Sam went to the store, Sam gave a drink to", "answer": "Maryanne", "distractor": "Sam"}',
        '{"prompt": "When Amy and Sam went to the store, Sam gave a drink to", "answer": "Amy", "distractor": "Sam", '
        '"corrupted_prompt": "When Amy and Sam went to the big store, Sam gave a drink to"}',
        '{"prompt": "When Amy and Sam went to the store, Sam gave a drink to ", "answer": "Amy", "distractor": "Sam"}',
    ]
    data = build_task_data(parse_items("\n".join(lines)), _pair(tok), name="custom")
    assert data.n_prompts == 4
    reasons = {r["index"]: r["reason"] for r in data.rejected}
    assert set(reasons) == {4, 5, 6}
    assert "answer ' Maryanne' is" in reasons[4] and "tokens for the teacher tokenizer" in reasons[4]
    assert "different lengths" in reasons[5]
    assert "whitespace" in reasons[6]
    assert data.info()["n_rejected"] == 3 and data.info()["rejected"][0]["prompt"].startswith("When Amy")


def test_custom_items_without_corrupted_prompt_borrow_a_same_length_prompt(tok):
    data = build_task_data(parse_items("\n".join(JSONL_OK)), _pair(tok), name="custom")
    v = data.view("teacher")
    # all four have the same length; items 1..3 have no corrupted prompt and borrow the next one's
    # clean tokens (cyclically); item 0 keeps its own corrupted prompt
    assert torch.equal(v.corrupted.tokens[1], v.clean.tokens[2])
    assert torch.equal(v.corrupted.tokens[3], v.clean.tokens[0])
    own = [tok.bos_token_id] + tok(data.items[0].corrupted_prompt, add_special_tokens=False)["input_ids"]
    assert v.corrupted.tokens[0, : len(own)].tolist() == own
    assert any("corrupted_prompt" in w for w in data.warnings)


def test_too_few_usable_prompts_is_an_error_naming_the_problem(tok):
    bad = "\n".join(
        f'{{"prompt": "When Amy and Sam went to the store, Sam gave a drink to", "answer": "Zzyzx{i}", "distractor": "Sam"}}'
        for i in range(5)
    )
    with pytest.raises(TaskTokenizationError, match=r"only 0 of 5 prompts are usable.*answer") as e:
        build_task_data(parse_items(bad), _pair(tok), name="custom")
    assert len(e.value.rejected) == 5


def test_different_vocabularies_are_aligned_by_words(tok, tiny_gpt_other_vocab_dir):
    # issue #4: different tokenisations are mapped to shared words by character offsets
    other = AutoTokenizer.from_pretrained(tiny_gpt_other_vocab_dir)
    data = build_task_data(task_items("ioi", {}, 4, seed=0), {"teacher": tok, "student": other}, name="ioi")
    assert data.token_alignment == "word_pooled" and data.word_aligned
    assert data.words[0][-2:] == ["drink", "to"] or data.words[0][-1] == "to"


def test_a_tokenizer_without_offsets_has_no_sound_mapping(tok):
    from transformers import ByT5Tokenizer  # a python tokenizer: no character offsets

    with pytest.raises(IncompatibleModelsError, match="no character offsets"):
        build_task_data(task_items("ioi", {}, 4, seed=0), {"teacher": tok, "student": ByT5Tokenizer()}, name="ioi")


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "line 1: not valid JSON"),
        ('{"prompt": "a", "answer": "b"}', "line 1: missing required field 'distractor'"),
        ('\n{"prompt": "a", "answer": "b", "distractor": "b"}', "line 2: distractor equals the answer"),
        ('{"prompt": "a", "answer": "b", "distractor": "c", "extra": 1}', "unknown field 'extra'"),
        ('{"prompt": "a", "answer": "b", "distractor": "c", "masked_prompt": ""}', "'masked_prompt' must be a non-empty"),
        ("", "dataset is empty"),
    ],
)
def test_invalid_jsonl_names_the_line(text, message):
    with pytest.raises(DatasetError, match=message):
        parse_items(text)


def test_dataset_reference_resolution(tmp_path):
    f = tmp_path / "abc123.jsonl"
    f.write_text(JSONL_OK[0])
    assert resolve_dataset(str(f)) == f
    with use(EngineSettings(datasets_dir=tmp_path)):  # the worker's: jobs.settings.Settings.engine
        assert resolve_dataset("abc123") == f
    assert resolve_dataset("abc123", tmp_path) == f
    with pytest.raises(DatasetError, match="no such file"):
        resolve_dataset("../abc123")


def test_invalid_lines_are_dropped_and_every_item_keeps_its_file_line():
    """#27: one behaviour for a broken file: the engine drops the invalid lines as an upload does
    (numbered the same 1-based way); strict refuses them."""
    from circuitdiff.tasks.custom import dropped_summary, numbered_lines

    text = "\n".join([JSONL_OK[0], "{not json", "", JSONL_OK[1], '{"prompt": "a", "answer": "b"}', JSONL_OK[2]])
    items = parse_items(text)
    assert [it.meta["line"] for it in items] == [1, 4, 6]
    numbered, rejected = numbered_lines(text)
    assert [n for n, _ in numbered] == [1, 4, 6] and [r["line"] for r in rejected] == [2, 5]
    assert dropped_summary(rejected, 5, "dataset d.jsonl").startswith(
        "dataset d.jsonl: 2 of 5 lines dropped as invalid (line 2: not valid JSON")
    with pytest.raises(DatasetError, match="2 invalid lines: line 2: not valid JSON.*line 5: missing required field"):
        parse_items(text, strict=True)
