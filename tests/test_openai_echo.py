"""Scoring text through /v1/completions: echo with prompt logprobs, max_tokens 0, token-id prompts and batches of
prompts, as lm-evaluation-harness's `local-completions` model sends them for log-likelihoods.

The request shape and what is read back are those of lm_eval 0.4.13, lm_eval/models/openai_completions.py
(`LocalCompletionsAPI._create_payload(generate=False)` and `parse_logprobs`) and lm_eval/models/api_models.py
(`batch_loglikelihood_requests`: each prompt is context + continuation as token ids, `ctxlen` the context's
length). lm_eval's own client also runs against the server (test_lm_eval_client_loglikelihood).
"""
from __future__ import annotations

import math
from operator import itemgetter

import pytest
import torch

from openai_helpers import assert_error, assert_server_still_serves


def lm_eval_body(prompt) -> dict:
    """LocalCompletionsAPI._create_payload(..., generate=False), lm_eval 0.4.13."""
    return {"model": "x", "prompt": prompt, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234,
            "echo": True}


def lm_eval_parse(out: dict, ctxlens: list[int]) -> list[tuple[float, bool]]:
    """LocalCompletionsAPI.parse_logprobs, lm_eval 0.4.13 (as written there)."""
    res = []
    for choice, ctxlen in zip(sorted(out["choices"], key=itemgetter("index")), ctxlens):
        token_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        greedy = all(tok == max(top.values()) for tok, top in zip(token_logprobs, top_logprobs))
        res.append((sum(token_logprobs), greedy))
    return res


def reference_logprobs(bundled, ids: list[int]) -> list[float]:
    """log p(token t | tokens < t) for t >= 1, from a plain forward of the whole sequence."""
    with torch.inference_mode():
        logp = bundled.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return [logp[t - 1, ids[t]].item() for t in range(1, len(ids))]


def test_echo_with_max_tokens_0_scores_the_prompt(http, bundled):
    prompt = "The capital of France is Paris."
    out = http.post("/completions", json={"model": "x", "prompt": prompt, "max_tokens": 0, "echo": True,
                                          "logprobs": 2})
    assert out.status_code == 200, out.text
    body = out.json()
    (choice,) = body["choices"]
    assert choice["text"] == prompt and choice["finish_reason"] == "length" and choice["index"] == 0
    ids = bundled.tokenizer(prompt)["input_ids"]
    lp = choice["logprobs"]
    assert lp["tokens"] == [bundled.token_label(t) for t in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == pytest.approx(reference_logprobs(bundled, ids), abs=1e-4)
    assert lp["text_offset"][0] == 0 and len(lp["text_offset"]) == len(ids)
    for top, value, token in zip(lp["top_logprobs"][1:], lp["token_logprobs"][1:], lp["tokens"][1:]):
        assert len(top) == 2 and max(top.values()) >= value - 1e-6
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}


def test_echo_with_a_completion_puts_the_prompt_first(http, engine):
    prompt = "Once upon a time"
    body = {"model": "x", "prompt": prompt, "max_tokens": 4, "temperature": 0, "echo": True, "logprobs": 1}
    echoed = http.post("/completions", json=body).json()["choices"][0]
    plain = http.post("/completions", json={**body, "echo": False}).json()["choices"][0]
    assert echoed["text"] == prompt + plain["text"]
    ids = engine.encode(prompt, raw=True)
    lp = echoed["logprobs"]
    assert len(lp["tokens"]) == len(ids) + 4  # every token listed, special ones too
    assert lp["token_logprobs"][len(ids):] == pytest.approx(plain["logprobs"]["token_logprobs"], abs=1e-4)
    assert lp["text_offset"][len(ids)] == len(prompt)
    no_logprobs = http.post("/completions", json={**body, "logprobs": None}).json()["choices"][0]
    assert no_logprobs["text"] == echoed["text"] and no_logprobs["logprobs"] is None


def test_lm_eval_loglikelihood_request_shapes(http, bundled, engine):
    """Token-id prompts in a batch, scored as lm_eval scores them: the continuation's log-likelihood equals a
    plain forward's, and the greedy flag matches the argmax."""
    pairs = [("Question: What is the capital of France?\nAnswer:", " Paris"),
             ("The sky is", " green and full of cheese"),
             ("1, 2, 3,", " 4")]
    prompts, ctxlens = [], []
    for context, continuation in pairs:
        ctx = bundled.tokenizer(context, add_special_tokens=False)["input_ids"]
        cont = bundled.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        prompts.append(ctx + cont)
        ctxlens.append(len(ctx))
    out = http.post("/completions", json=lm_eval_body(prompts))
    assert out.status_code == 200, out.text
    body = out.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    for (loglik, greedy), ids, ctxlen in zip(lm_eval_parse(body, ctxlens), prompts, ctxlens):
        ref = reference_logprobs(bundled, ids)[ctxlen - 1:]
        assert loglik == pytest.approx(sum(ref), abs=1e-3)
        with torch.inference_mode():
            argmax = bundled.model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).tolist()
        assert greedy == all(argmax[t - 1] == ids[t] for t in range(ctxlen, len(ids)))
    assert lm_eval_parse(body, ctxlens)[2][1] is True  # " 4" after "1, 2, 3," is the greedy choice
    single = http.post("/completions", json=lm_eval_body(prompts[0])).json()  # a flat list of ids: one prompt
    assert single["choices"][0]["logprobs"]["token_logprobs"] == body["choices"][0]["logprobs"]["token_logprobs"]


def test_a_batch_of_string_prompts_with_n(http, engine):
    body = {"model": "x", "prompt": ["My favourite animal is", "The weather today"], "max_tokens": 3, "n": 2,
            "temperature": 1.0, "seed": 7}
    out = http.post("/completions", json=body).json()
    assert [c["index"] for c in out["choices"]] == [0, 1, 2, 3]
    for i, prompt in enumerate(body["prompt"]):
        alone = http.post("/completions", json={**body, "prompt": prompt}).json()["choices"]
        assert [c["text"] for c in out["choices"][2 * i:2 * i + 2]] == [c["text"] for c in alone]
    echoed = http.post("/completions", json={**body, "echo": True}).json()["choices"]
    assert [c["text"] for c in echoed] == [body["prompt"][c["index"] // 2] + o["text"]
                                           for c, o in zip(echoed, out["choices"])]


def test_echo_logprobs_are_json_numbers(http):
    out = http.post("/completions", json={"model": "x", "prompt": "a b c d e", "max_tokens": 0, "echo": True,
                                          "logprobs": 5, "top_k": 1})
    values = out.json()["choices"][0]["logprobs"]["token_logprobs"][1:]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)  # raw model: top_k changes nothing here


@pytest.mark.parametrize("body, status, field", [
    ({"prompt": "Hi", "echo": True, "stream": True}, 400, "echo"),
    ({"prompt": "Hi", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "Hi", "max_tokens": -1, "echo": True}, 400, "max_tokens"),
    ({"prompt": ["Hi", "there"], "stream": True}, 400, "prompt"),
    ({"prompt": []}, 400, "prompt"),
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": [[]]}, 400, "prompt"),
    ({"prompt": ["Hi", ""]}, 400, "prompt"),
    ({"prompt": [1, "a"]}, 400, "prompt"),
    ({"prompt": [[1, 2], [49152]]}, 400, "prompt"),
    ({"prompt": [True, 2]}, 400, "prompt"),
    ({"prompt": ["Hi"] * 200, "n": 3}, 413, "prompt"),
    ({"prompt": "Hi", "echo": "yes"}, 400, "echo"),
])
def test_bad_scoring_requests_name_the_field(http, body, status, field):
    assert_error(http.post("/completions", json={"model": "x", **body}), status, (field,))
    assert_server_still_serves(http)


def test_lm_eval_client_loglikelihood(base_url, bundled, tmp_path):
    """lm_eval's own `local-completions` model (requirements.txt installs lm_eval[api]) against the running server."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    tokenizer_dir = tmp_path / "tokenizer"
    bundled.tokenizer.save_pretrained(tokenizer_dir)
    lm = LocalCompletionsAPI(base_url=base_url + "/completions", model="x", tokenizer=str(tokenizer_dir),
                             tokenizer_backend="huggingface", max_retries=1, max_length=2048)
    pairs = [("The capital of France is", " Paris"), ("1, 2, 3,", " 4")]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    results = lm.loglikelihood(requests, disable_tqdm=True)
    for (loglik, greedy), (context, continuation) in zip(results, pairs):
        ctx = bundled.tokenizer(context, add_special_tokens=False)["input_ids"]
        cont = bundled.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        ref = reference_logprobs(bundled, ctx + cont)[len(ctx) - 1:]
        assert loglik == pytest.approx(sum(ref), abs=1e-3)
    assert results[1][1] is True


def test_echo_params_do_not_change_prompt_scores(http):
    """Prompt logprobs are the raw model's whatever the settings (what log-likelihood evaluation needs)."""
    base = {"model": "x", "prompt": "The quick brown fox", "max_tokens": 0, "echo": True, "logprobs": 0}
    plain = http.post("/completions", json=base).json()["choices"][0]["logprobs"]["token_logprobs"]
    tuned = http.post("/completions", json={**base, "temperature": 0.3, "top_p": 0.5}).json()
    assert tuned["choices"][0]["logprobs"]["token_logprobs"] == plain
