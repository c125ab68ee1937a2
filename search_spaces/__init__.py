"""The built-in sweeps, one module per family. The sweep registry imports every public module here the
first time it is used (this package is tune_robust's ``sweeps`` plugin; see tune_robust/plugins.py)."""
