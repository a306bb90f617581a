"""Tasks as dramatiq actors, the wf context, the pure replay engine and message models."""
