"""Token healing (engine/healing.py): equal to transformers' heal_tokens, applied once per prompt, exact in replays."""
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
import torch

from engine.generate import Engine
from engine.healing import heal_prompt
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweep import stream_sweep
from engine.sweepspec import Axis, SweepSpec
from playground.openai_request import RequestError, parse_request

PROMPTS = ["The link is http", "I read a book about the his", "Write a haiku about the sea and the sk",
           "The capital of France is Par", "  Hello wor  ", "The answer is 4", "x", "Quick brown fo",
           "def main(argu", "She opened the do"]


def transformers_heal(loaded, ids: list[int]) -> list[int]:
    """transformers' own heal_tokens, told the vocabulary's space marker (its lookup of " " finds the unknown
    token in a byte-level BPE vocabulary, and then it never heals: see engine/healing.py)."""
    tok = loaded.tokenizer
    original = tok.convert_tokens_to_ids
    tok.convert_tokens_to_ids = lambda t: original("Ġ") if t == " " else original(t)
    try:
        return loaded.model.heal_tokens(torch.tensor([ids]), tokenizer=tok)[0].tolist()
    finally:
        tok.convert_tokens_to_ids = original


@pytest.mark.parametrize("prompt", PROMPTS)
def test_healing_equals_transformers_heal_tokens(bundled, prompt):
    ids = bundled.tokenizer(prompt).input_ids
    assert heal_prompt(bundled, tuple(ids)) == transformers_heal(bundled, ids)


def test_healing_completes_words_on_the_bundled_model(bundled):
    healed = {p: bundled.tokenizer.decode(heal_prompt(bundled, tuple(bundled.tokenizer(p).input_ids)))
              for p in ("The link is http", "The capital of France is Par")}
    assert healed == {"The link is http": "The link is https", "The capital of France is Par": "The capital of France is Paris"}


def test_healed_and_plain_rows_share_a_batch_and_each_equals_its_own_run(tiny):
    engine = Engine(tiny)
    prompt = tiny.tokenizer("The capital of France is Par").input_ids
    params = [SamplingParams(max_new_tokens=6, seed=s, token_healing=h, temperature=1.2) for s in (1, 2) for h in (False, True)]
    together = engine.generate(prompt, params, [0, 0, 0, 0])
    healed = heal_prompt(tiny, tuple(prompt))
    for row, p in enumerate(params):
        assert together.prompt_of(row) == (healed if p.token_healing else prompt)
        alone = engine.generate(together.prompt_of(row), [p.replace(token_healing=False)], [0]).rows[0]
        assert alone.token_ids == together.rows[row].token_ids  # healing is the prompt's change, nothing else
        for step in range(len(alone.token_ids)):  # a replay reads the healed prompt from the result
            assert engine.replay(together, row, step).chosen == alone.token_ids[step]


def test_a_sweep_over_healing_records_each_rows_prompt(tiny):
    engine = Engine(tiny)
    spec = SweepSpec("The link is http", SamplingParams(max_new_tokens=3, seed=1), (Axis("token_healing", (False, True)),),
                     raw=True)
    result = None
    for _, done in stream_sweep(engine, spec):
        result = done or result
    plain, healed = (result.generation.prompt_of(i) for i in (0, 1))
    assert plain == tiny.tokenizer("The link is http").input_ids
    assert healed == heal_prompt(tiny, tuple(plain))
    records = result.records()
    assert [r["token_healing"] for r in records] == [False, True]


def test_healing_is_refused_where_it_cannot_apply(tiny):
    with pytest.raises(ParamError, match="^token_healing: .*raw prompt"):
        SweepSpec("Hello wor", SamplingParams(token_healing=True))  # the chat template's markers
    with pytest.raises(ParamError, match="^token_healing: .*num_beams"):
        SamplingParams(token_healing=True, num_beams=2, do_sample=False)
    with pytest.raises(ParamError, match="^token_healing: must be true or false"):
        SamplingParams(token_healing="yes")
    with pytest.raises(RequestError, match="^token_healing: .*chat"):
        parse_request({"messages": [{"role": "user", "content": "Hi"}], "token_healing": True}, True, Engine(tiny))
    parsed = parse_request({"prompt": "The link is http", "token_healing": True}, False, Engine(tiny))
    assert parsed.params.token_healing


def test_the_transformers_export_asks_for_token_healing():
    assert SamplingParams(token_healing=True).generate_kwargs()["token_healing"] is True


# Random prompts: a real sentence cut at any character (mid-word tails are what healing is for), or any text drawn
# from letters, digits, punctuation, spaces, newlines and non-ASCII characters (tails made of bytes of one
# character, tails that are whitespace, single-token prompts).
SENTENCES = ("The quick brown fox jumps over the lazy dog near the riverbank.",
             "Visit https://example.com/docs for the installation instructions and examples.",
             "def tokenize(text: str) -> list[int]:\n    return encoder.encode(text)",
             "Les élèves étudiaient la géographie européenne pendant l'après-midi.",
             "Temperature 0.7, top_p 0.95 and min_p 0.05 are common settings; 北京 is a city.")
cut_sentences = st.builds(lambda s, cut: s[:cut], st.sampled_from(SENTENCES), st.integers(1, 80))
any_text = st.text(st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,;:!?'\"-_/()\n\té中😀")),
                   min_size=1, max_size=24)


@given(prompt=st.one_of(cut_sentences, any_text), raw_ids=st.booleans())
@example(prompt="Les élè", raw_ids=False)  # a tail that transformers' heal_tokens crashes on
def test_healing_equals_transformers_heal_tokens_on_random_prompts(bundled, prompt, raw_ids):
    """For any prompt (and any tokenization of it: the tokenizer's, or that of its text re-encoded in two halves,
    which need not be canonical), ours equals transformers' heal_tokens given the same space marker."""
    ids = bundled.tokenizer(prompt).input_ids
    if raw_ids and len(prompt) > 1:
        half = len(prompt) // 2
        ids = (bundled.tokenizer(prompt[:half]).input_ids
               + bundled.tokenizer(prompt[half:], add_special_tokens=False).input_ids)
    assume(ids)
    healed = heal_prompt(bundled, tuple(ids))
    try:
        expected = transformers_heal(bundled, ids)
    except KeyError:
        # transformers adds its bonus to the tail's own entry among the extensions, and a tail whose text is not a
        # vocabulary piece (a byte of a character: "è" is written "Ã¨" there) has none: it crashes. Ours heals
        # such a tail like any other (or keeps it): only the last token of the re-tokenized prompt may change
        tok = bundled.tokenizer
        text = tok.decode(ids, skip_special_tokens=True).strip()
        again = [tok.pad_token_id if t == tok.bos_token_id else t for t in tok(text).input_ids]
        assert len(healed) == len(again) and healed[:-1] == again[:-1], (healed, again)
        return
    assert healed == expected
