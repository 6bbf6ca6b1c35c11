"""What media tests share that is not a fixture (fixtures: tests/media/conftest.py).

``clips`` generates the test clips with ffmpeg; other tiers use it too.
"""

PRESET = "ultrafast"   # tests only; production uses ffmpeg_commands.DEFAULT_PRESET
