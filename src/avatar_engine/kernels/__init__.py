"""Batched numeric stages with interchangeable backends (numpy reference, numba, native C++)."""
