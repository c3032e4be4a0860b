"""Thin command-line entry points (``paraling ...``); nothing in paraling imports this package."""
