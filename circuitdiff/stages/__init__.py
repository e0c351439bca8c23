"""The stages of a comparison, one module each, in the order :func:`circuitdiff.pipeline.run_comparison`
runs them. Each takes the :class:`~.context.RunContext` (the resolved spec, the loaded pair, the
stage clock) and what earlier stages returned, and returns a typed value or a result section:

  load         both models, and the spec resolved against their layout      -> LoadedPair
  task         prompts -> token batches for the pair, refusals               -> PreparedTask
  clean        one clean pass per model (+ ``words`` for word-aligned pairs) -> CleanStats per model
  influence    every head and MLP ablated alone, per model                   -> Influences
  performance  who performs the task                                          -> Performance per model
  similarity   head row cosine; MLP linear CKA or the paper's eigenvectors    -> Similarities
  matching     pairs, thresholds, duplicated pairs, bootstrap confidences     -> Matching
  alignment    influence-weighted score, bootstrap CI, chance calibration     -> result.Alignment
  robustness   per-model drop statistics, compression ratio and slope         -> result.Robustness
  circuits     each model's circuit, the sweep, the transfer with nulls       -> result.Circuits
  assemble     every section and the provenance into the result               -> ComparisonResult

Measurement lives in circuitdiff.scan, statistics in circuitdiff.analysis; a stage decides what to
run from the spec and builds its section, nothing more.
"""
