"""Data modules: embedded datasets, the paper's datasets and the CGMA cache."""
