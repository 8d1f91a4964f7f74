"""The refund rules, pure: no I/O, no frameworks, no clocks. Everything here is a value or a function."""
