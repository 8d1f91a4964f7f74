"""Refund worker."""
