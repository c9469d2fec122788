"""Applications of the `models` library: verifier training, the ShapeWorld miniature, GenEval runs, test fixtures.

They import `models` (never the reverse) and each other in one direction only: shapeworld -> training -> prompts.
Run them from the repository root, e.g. `python -m apps.training --help`, `python -m apps.geneval --help`.
"""
