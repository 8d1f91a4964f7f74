"""Entry points: the command line, the worker launcher, the demo and its seed data, the quote and
the AsyncAPI document."""
