"""The learned proxy (issue 18): the expensive method on a sample, a regressor from cheap features to
its score, predictions for the rest.

Modules: ``fit`` (the pure part: sampling, fitting, the held-out check, on arrays) and ``job`` (the
scoring job around it: measures the sample and the features through the engine).
"""
