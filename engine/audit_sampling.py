"""`python -m engine.audit_sampling`, the name earlier notes cite: runs `python -m engine.bench.audit_sampling`."""
from .bench.audit_sampling import *  # noqa: F401,F403  (main, audit, Counts, SETTINGS, ...)
if __name__ == "__main__": main()  # noqa: E701,F405
