"""Benchmarks and audits: each a module with its own command line (none is imported by the library).

    python -m engine.bench                    the reference benchmark: the engine vs transformers' generate(),
                                              llama.cpp (when llama_cpp is importable) and the bare model
                                              forwards (reference.py, llamacpp_peer.py)
    python -m engine.bench.beams              batched beam configurations vs one generate() per configuration
    python -m engine.bench.audit_sampling     every step of long sweeps checked for removed tokens chosen
    python -m engine.bench.api                the OpenAI-compatible API's latency and throughput, over HTTP on
                                              the app started as its own process (`python app.py --port N`)
    python -m engine.bench.startup            seconds from starting `python app.py` to its printed URL

The Distributions view's latency stays in the UI package (`python -m playground.bench`): it times the server
work of one slider move, which is a page-only event whose run lives in the page session's state, so it has no
HTTP form to call from outside (the public /distribution endpoint returns JSON without the figures); its
`--browser` mode times the same move in Chromium.
"""
