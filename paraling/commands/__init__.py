"""Thin CLI sub-commands; each module exposes ``main(argv) -> int``."""
