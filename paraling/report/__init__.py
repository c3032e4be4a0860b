"""Reports over tracked runs: the comparison table over seeds (``paraling report``), paired tests, learning curves,
the paper's Table 1 columns, vote diagnostics, and the end-of-run summary of ``paraling train``."""
