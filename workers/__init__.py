"""Workers: the Procrastinate app and its tasks. Thin: the runtime does the work."""
