"""circuitdiff: compare the internals of a teacher language model and its distilled student.

Importing the package stays torch-free; ``run_comparison`` is imported lazily from the pipeline.
"""

__version__ = "0.1.0"
ENGINE_VERSION = __version__


def __getattr__(name):  # lazy: keeps `import circuitdiff.spec` free of torch for the service
    if name in ("run_comparison",):
        from .pipeline import run_comparison

        return run_comparison
    raise AttributeError(name)
