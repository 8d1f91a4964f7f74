"""`refund-worker dlq`: reading dead-letter topics and putting their messages back (docs/dead-letters.md).

selection: which dead letters (the filters list and replay share), letters: one dead letter and
what replaying it sends, kafka: reading a dead-letter topic and republishing, replay: the replay
run, render: tables for people, cli: the typer commands.
"""
