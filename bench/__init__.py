"""``make bench``: the edge pipeline measured against the bare interpreter and the usual example loop.

``python -m bench`` builds (and caches under ``build/bench``) the models and videos, runs the six
measurements side by side in one run, and writes ``results.json`` and ``results.md``.
"""
