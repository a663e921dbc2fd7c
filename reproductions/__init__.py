"""Paper reproductions: scripts that call divrec library code only.

Run one as `python -m reproductions.NAME --out DIR` from the repository root.
"""
