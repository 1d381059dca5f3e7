"""The specs of engine/knobs.py against everything derived from them and against SamplingParams, the public
dataclass that is written out by hand: a knob declared in one place and missing in another fails here."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
import transformers

from engine import knobs
from engine.knobs import GENERATION_KNOBS, KNOBS, PROCESSORS, ProcessorSpec
from engine.order import DEFAULT_ORDER
from engine.params import FIELD_NAMES, NO_TRANSFORMERS_EQUIVALENT, NUMERIC_FIELDS, SAMPLING_ONLY, SamplingParams
from engine.processors import REGISTRY
from engine.rowstate import RowParams
from playground.controls import CONTROL_FIELDS, CONTROLS

HINTS = typing.get_type_hints(SamplingParams)
DEFAULTS = SamplingParams()
# transformers 5 moved diverse beam search (and its HammingDiversityLogitsProcessor) out of the library
MOVED_OUT_OF_TRANSFORMERS_5 = {"HammingDiversityLogitsProcessor"}


def test_every_samplingparams_field_is_a_knob_and_every_knob_a_field():
    assert set(FIELD_NAMES) == set(KNOBS)
    assert len(KNOBS) == len(GENERATION_KNOBS) + sum(len(spec.fields) for spec in PROCESSORS)  # none twice


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_a_knobs_default_and_type_are_the_dataclass_ones(name):
    knob = KNOBS[name]
    if name == "order":
        assert DEFAULTS.order == DEFAULT_ORDER
        return
    assert getattr(DEFAULTS, name) == knob.default
    if knob.kind is bool:
        assert HINTS[name] is bool and isinstance(knob.default, bool)
    if knob.kind in (int, float):
        assert HINTS[name] is knob.kind, name
        assert NUMERIC_FIELDS[name] == (knob.kind, knob.range)
        assert knob.range.contains(knob.default)
    else:
        assert name not in NUMERIC_FIELDS


def test_the_default_order_is_the_order_of_the_specs_and_each_has_its_function():
    assert DEFAULT_ORDER == tuple(spec.name for spec in PROCESSORS) == tuple(REGISTRY)
    for spec in PROCESSORS:
        assert callable(REGISTRY[spec.name].apply) and REGISTRY[spec.name].apply.__name__ == spec.name
    assert SAMPLING_ONLY == {spec.name for spec in PROCESSORS if spec.sampling_only}


@pytest.mark.parametrize("spec", PROCESSORS, ids=lambda s: s.name)
def test_a_processor_names_its_transformers_class_or_says_why_not(spec: ProcessorSpec):
    if spec.transformers is None:
        assert spec.lacks_reason().startswith("transformers has no")
        for name in spec.switch_names():
            assert NO_TRANSFORMERS_EQUIVALENT[name] == (KNOBS[name].default, spec.name)
    else:
        assert spec.transformers in MOVED_OUT_OF_TRANSFORMERS_5 or hasattr(transformers, spec.transformers)
        assert not set(NO_TRANSFORMERS_EQUIVALENT) & {k.name for k in spec.fields}
    assert spec.help and spec.title and set(spec.switch_names()) <= {k.name for k in spec.fields}


@pytest.mark.parametrize("spec", PROCESSORS, ids=lambda s: s.name)
def test_a_processor_is_off_at_the_defaults_and_on_when_a_switch_moves(spec: ProcessorSpec):
    """The derived `active`: every switch at its default leaves the row alone; any switch moved acts on it."""
    assert not REGISTRY[spec.name].active(RowParams.build([DEFAULTS], [0], 8)).any()
    on_values = {"sequence_bias": [([3], 1.0)], "bad_words": [[3]], "suppress_tokens": [3], "begin_suppress_tokens": [3]}
    for name in spec.switch_names():
        knob = KNOBS[name]
        if name in on_values:
            kw = {name: [on_values[name]]}
            rows = RowParams.build([DEFAULTS], [0], 8, **kw)
        elif name == "synthid_keys":  # a list of keys (SynthID's per-row config table)
            rows = RowParams.build([DEFAULTS.replace(synthid_keys=[1, 2])], [0], 8)
        else:
            r = knob.range
            if knob.kind is bool:
                other = not knob.default
            else:
                other = r.high if r.high != knob.default and not r.high_open else (r.low + r.high) / 2
            moved = {"mirostat": 2, "min_new_tokens": 1, "exponential_decay_factor": 1.5}.get(name, other)
            extra = {"num_beams": 2, "num_beam_groups": 2, "do_sample": False} if name == "diversity_penalty" else {}
            rows = RowParams.build([DEFAULTS.replace(**{name: moved}, **extra)], [0], 8)
        assert REGISTRY[spec.name].active(rows).all(), name


def test_row_tensors_have_the_declared_type_and_shape():
    rows = RowParams.build([DEFAULTS, DEFAULTS.replace(do_sample=False)], [0], 8)
    dtypes = {"float32": torch.float32, "float64": torch.float64, "long": torch.long, "bool": torch.bool}
    for spec in PROCESSORS:
        for knob in spec.fields:
            if knob.dtype is None:
                continue
            tensor = getattr(rows, knob.name)
            assert tensor.dtype == dtypes[knob.dtype], knob.name
            assert tensor.shape == ((2, 1) if knob.column else (2,)), knob.name


def test_every_field_with_a_widget_is_a_control_in_its_group_and_range():
    with_widget = [k for k in KNOBS.values() if k.widget is not None]
    assert sorted(CONTROL_FIELDS) == sorted(k.name for k in with_widget)
    for control in CONTROLS:
        knob = KNOBS[control.field]
        assert control.group in knobs.GROUPS and control.info
        if control.kind == "slider":  # the drag range lies inside the field's allowed range
            assert knob.range.contains(control.minimum) and knob.range.contains(control.maximum), control.field


def test_generate_kwargs_come_from_the_specs_hf_arguments():
    params = SamplingParams(temperature=0.7, top_k=5, min_p=0.1, repetition_penalty=1.2, min_new_tokens=3)
    kwargs = params.generate_kwargs()
    for spec in PROCESSORS:
        for knob in spec.fields:
            if knob.hf_arg and not (knob.hf_only_if_set and getattr(params, knob.name) == knob.default):
                assert kwargs[knob.hf_arg] == getattr(params, knob.name)
    greedy = SamplingParams(do_sample=False).generate_kwargs()
    assert not {k.hf_arg for s in PROCESSORS if s.sampling_only for k in s.fields} & set(greedy)


def test_a_spec_without_a_function_is_refused_by_name():
    from engine.processors import _function
    with pytest.raises(RuntimeError, match="no function named not_a_sampler"):
        _function("not_a_sampler")


def test_every_processor_field_default_is_off_for_its_switches():
    """The knobs' defaults are SamplingParams' defaults, so a default config runs no processor at all."""
    rows = RowParams.build([DEFAULTS], [0], 8)
    assert [name for name, p in REGISTRY.items() if p.active(rows).any()] == []
    assert dataclasses.replace(DEFAULTS) == DEFAULTS
