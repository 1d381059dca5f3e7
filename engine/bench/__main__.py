"""`python -m engine.bench`: the reference benchmark (engine/bench/reference.py)."""
from .reference import main

main()
