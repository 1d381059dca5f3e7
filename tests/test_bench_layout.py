"""The benchmarks' package: the engine (benchmarks included) never imports the UI, and the old commands still run."""
from __future__ import annotations

import ast
from pathlib import Path

import torch

ENGINE = Path(__file__).resolve().parents[1] / "engine"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_engine_module_imports_gradio_or_the_playground():
    offenders = {str(p.relative_to(ENGINE)): sorted(imported_modules(p) & {"gradio", "gradio_client", "playground"})
                 for p in sorted(ENGINE.rglob("*.py"))}
    assert not {p: names for p, names in offenders.items() if names}


def test_old_audit_command_runs_the_audit_in_the_bench_package():
    import engine.audit_sampling as old
    from engine.bench import audit_sampling

    assert old.main is audit_sampling.main  # `python -m engine.audit_sampling` calls it


def test_reference_benchmark_flags_are_kept():
    from engine.bench.reference import parse_args

    quick = parse_args(["--quick"])
    assert (quick.tokens, quick.repeats, quick.samples) == (16, 1, 4)
    assert parse_args(["--repeats", "5", "--tokens", "8"]).repeats == 5


def test_random_smollm2_135m_has_the_bundled_models_shapes(bundled):
    """The GPU benchmarks' random-weight architecture is the bundled model's, parameter for parameter."""
    from engine.bench.archs import kv_bytes_per_token, random_model

    built = random_model("smollm2-135m", device="cpu", dtype="float32")
    shapes = {name: tuple(p.shape) for name, p in bundled.model.named_parameters()}
    assert {name: tuple(p.shape) for name, p in built.model.named_parameters()} == shapes
    assert built.vocab_size == bundled.vocab_size and built.context_length == bundled.context_length
    cfg = bundled.model.config  # K and V, per layer, per KV head, head_dim values of 4 bytes
    assert kv_bytes_per_token("smollm2-135m", torch.float32) == (
        cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * 4)


def test_sizes_benchmark_writes_its_table(tmp_path):
    """`python -m engine.bench.sizes` end to end at a toy size: every method, the invariance check, the table."""
    import json

    from engine.bench import sizes

    sizes.main(["--archs", "smollm2-135m", "--sweeps", "3x3:1", "--tokens", "3", "--repeats", "1",
                "--out", str(tmp_path)])
    [summary] = json.loads((tmp_path / "summaries.json").read_text())
    assert summary["rows"] == 9 and summary["expected_tokens"] == 27
    assert all(m["tokens"] == 27 for m in summary["methods"].values())
    assert summary["invariance"]["equal_rows"] == 9  # fp32 on a CPU: every cell alone equals itself in the sweep
    table = (tmp_path / "table.md").read_text()
    assert "| smollm2-135m (0.13 B) | 9 |" in table


def test_invariance_benchmark_compares_every_cell_alone_with_the_sweep(capsys):
    import json

    from engine.bench import invariance

    assert invariance.main(["--samples", "1", "--tokens", "3"]) == 0  # the bundled model at fp32
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 9 and report["equal_rows"] == 9 and report["first_difference_step"] == [None] * 9
