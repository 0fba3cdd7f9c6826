"""MediaHub's benchmark suite (issue 6): `python -m bench [section ...] [--smoke]`.

Every comparison is measured side by side in one run (rows interleaved per
repeat) and every figure is a median over repeats. Inputs are generated at
bench time from the corpus' real photos into a temporary directory.
"""
