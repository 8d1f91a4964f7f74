"""Use case: expiry timers, set by terminations and renewals, fire subscription-expired on what has
been read."""
