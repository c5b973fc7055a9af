"""Synthetic ground truth: skin with known spots, lines and pores, generated in code.

Used by the tests and the repeatability harness to check metrics against what was planted.
"""
