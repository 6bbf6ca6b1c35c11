"""Media processors: pure Python + ffmpeg, free of Kafka and S3 (local paths in, dataclasses out).

ffmpeg_commands  every ffmpeg/ffprobe command line, the runner and progress parsing
probe            ffprobe -> MediaInfo (displayed size after rotation, fps, codecs)
validation       validate() -> MediaInfo or ValidationFailed(reason); seed quality label and source key
ladder           plan_ladder(): rungs from hls_config, never upscaled, aspect kept, even sizes
hls              package_hls(): one decode -> all rungs, AES-128, measured master playlist
thumbnails       poster, periodic thumbnails, sprite sheet, WebVTT storyboard
analysis         scene changes -> chapters, black frames, silence, EBU R128 loudness, one pass
captions         speech -> timed WebVTT cues (pocketsphinx's bundled model, offline, in a child process)
optimization     faststart remux, SSIM/PSNR per rung, per-title ladder pruning
"""
