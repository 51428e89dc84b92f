"""worldplayer engine: world models, caches, sampler, pipeline, VAEs, data, training and VAR.

Knows nothing of pygame; the app reaches it through `engine.worlds.World` sessions.
"""

__version__ = "0.1.0"
