"""From a scored run to its selection, reading only what the run wrote (scores.jsonl, config.json and
the score store); no model is loaded and no method replayed.

Modules, one job each: ``policy`` (fraction, top-N, threshold: pure, on a score array), ``dedup``
(exact and near copies: pure, on hashes and signatures), ``diversity`` (the walk that trades score for
distance: pure, on embeddings), ``steps`` (puts them together in their order on a run directory).
"""
