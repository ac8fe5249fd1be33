"""Command-line tools above the library: benchmark, results report, profiler, stage map, data bench, mini-set maker.

Each is ``python -m zoo.tools.<name> --help``. The library (``zoo.layers`` ... ``zoo.deploy``) never imports them.
"""
