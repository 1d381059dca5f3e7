"""Independent seeds per sweep cell: derived in the engine, carried by share links, presets, the CLI and /sweep."""
from __future__ import annotations

import pytest

from engine.__main__ import build_parser, build_spec
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweepspec import Axis, SweepSpec, cell_seed
from playground.config import PlaygroundConfig

AXES = (Axis("temperature", (0.2, 0.9)), Axis("top_p", (0.5, 1.0)))


def test_shared_seeds_by_default_and_one_seed_per_cell_when_independent():
    shared = SweepSpec("hi", SamplingParams(seed=3), AXES, samples=2)
    assert {r.params.seed for r in shared.rows()} == {3}
    independent = SweepSpec("hi", SamplingParams(seed=3), AXES, samples=2, independent_seeds=True)
    by_cell = {r.cell: r.params.seed for r in independent.rows()}
    assert len(set(by_cell.values())) == 4  # one seed per cell, shared by that cell's samples
    assert all(r.params.seed == by_cell[r.cell] for r in independent.rows())
    assert [r.params.seed for r in independent.rows()] == [r.params.seed for r in
                                                           SweepSpec("hi", SamplingParams(seed=3), AXES, 2,
                                                                     independent_seeds=True).rows()]


def test_a_cell_seed_depends_on_the_base_seed_and_its_values_not_on_the_grid():
    alone = SweepSpec("hi", SamplingParams(seed=3), (Axis("temperature", (0.9,)), Axis("top_p", (1.0,))),
                      independent_seeds=True)
    in_grid = SweepSpec("hi", SamplingParams(seed=3), AXES, independent_seeds=True)
    assert alone.rows()[0].params.seed == in_grid.rows()[-1].params.seed
    assert cell_seed(3, (("temperature", 0.9), ("top_p", 1.0))) == cell_seed(3, (("top_p", 1.0), ("temperature", 0.9)))
    assert cell_seed(3, (("temperature", 0.9),)) != cell_seed(4, (("temperature", 0.9),))
    assert 0 <= cell_seed(2**63 - 1, (("order", ("top_k", "temperature")),)) <= 2**53 - 1


def test_the_flag_is_checked_and_round_trips():
    with pytest.raises(ParamError, match="independent_seeds: must be true or false, got 1"):
        SweepSpec("hi", independent_seeds=1)
    spec = SweepSpec("hi", SamplingParams(seed=3), AXES, independent_seeds=True)
    assert SweepSpec.from_dict(spec.to_dict()) == spec


def test_share_links_and_presets_carry_it():
    config = PlaygroundConfig("hi", axes=(("temperature", "0.2, 0.9"),), independent_seeds=True)
    assert "independent_seeds=true" in config.to_query()
    assert PlaygroundConfig.from_query(config.to_query()) == config
    assert PlaygroundConfig.from_dict(config.to_dict()) == config
    assert config.sweep_spec().independent_seeds
    assert "independent_seeds" not in PlaygroundConfig("hi").to_query()
    with pytest.raises(ParamError, match="independent_seeds"):
        PlaygroundConfig.from_query("prompt=hi&independent_seeds=yes")


def test_the_command_line_takes_it():
    args = build_parser().parse_args(["sweep", "--prompt", "hi", "--axis", "temperature=0.2,0.9", "--seed", "3",
                                      "--independent-seeds"])
    spec = build_spec(args)
    assert spec.independent_seeds and len({r.params.seed for r in spec.rows()}) == 2
    assert not build_spec(build_parser().parse_args(["sweep", "--prompt", "hi"])).independent_seeds
