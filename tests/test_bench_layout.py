"""The benchmarks' package: the engine (benchmarks included) never imports the UI, and the old commands still run."""
from __future__ import annotations

import ast
from pathlib import Path

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
