"""Command-line front ends (`jzi ...`): each module parses its options and calls the library."""
