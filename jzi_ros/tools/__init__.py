"""Command-line front ends (`jzi ...`), evaluation, plots and simulation."""
