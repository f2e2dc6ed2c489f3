"""The engine: plan doit tasks, run a stage with the cache, explain why it runs."""
