"""`refund-worker dlq`: reading dead-letter topics and putting their messages back (docs/dead-letters.md).

selection: which dead letters (the filters list and replay share), letters: one dead letter and
what replaying it sends, kafka: reading a dead-letter topic and republishing, replay: the replay
run. The command line: cli (the typer commands), options (their options), cluster (what they do on
Kafka), exits (one-line failures and exit statuses). For people: text (values as text), listing
(`list`'s table), detail (`show`'s page), json_output (`--output json`), replay_report (`replay`'s
summary). recoverer: writing dead letters, for the pipeline.
"""
