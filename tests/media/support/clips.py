"""Test clips generated with ffmpeg's lavfi sources (testsrc2, smptebars, sine, anullsrc).

Every generator writes one file and returns its path; they are small and short
so the media tests stay fast on two cores. ``make_all(dir)`` builds the set.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

FFMPEG = "ffmpeg"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "64k"]


def _run(args: list[str]) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def video(path: Path, *, width: int = 320, height: int = 180, duration: float = 4, fps: int = 25,
          audio: bool = True, faststart: bool = False) -> Path:
    """testsrc2 (+ a 440 Hz sine) as H.264/AAC MP4."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}"]
    args += X264 + (AAC if audio else ["-an"])
    if width % 2 or height % 2:  # yuv420p needs even sizes: keep the odd coded size with 4:4:4
        args[args.index("yuv420p")] = "yuv444p"
        args += ["-vf", f"scale={width}:{height}"]  # testsrc2 itself rounds down to even
    if faststart:
        args += ["-movflags", "+faststart"]
    _run(args + ["-t", str(duration), str(path)])
    return path


def landscape(path: Path, duration: float = 12) -> Path:
    return video(path, width=1280, height=720, duration=duration)


def portrait_rotated(path: Path, duration: float = 4) -> Path:
    """Coded 320x180 with rotate=90 metadata (a phone held upright): displays as 180x320."""
    tmp = path.with_suffix(".unrotated.mp4")
    video(tmp, width=320, height=180, duration=duration)
    _run(["-i", str(tmp), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path)])
    tmp.unlink()
    return path


def no_audio(path: Path) -> Path:
    return video(path, width=320, height=180, duration=4, audio=False)


def very_short(path: Path) -> Path:
    return video(path, width=320, height=180, duration=1)


def odd_dimensions(path: Path) -> Path:
    return video(path, width=641, height=363, duration=2)


def variable_frame_rate(path: Path) -> Path:
    """Frames 20-59 dropped and timestamps kept: 25 fps with a 1.6 s hole."""
    _run(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
          "-vf", "select='not(between(n,20,59))'", "-fps_mode", "vfr", *X264, str(path)])
    return path


def scenes_and_silence(path: Path) -> Path:
    """12 s: testsrc2 0-5 s, black 5-7 s, smptebars 7-12 s; audio: tone 0-4 s, silence 4-7 s, tone 7-12 s."""
    graph = ("[0:v][1:v][2:v]concat=n=3:v=1:a=0,format=yuv420p[v];"
             "[3:a][4:a][5:a]concat=n=3:v=0:a=1[a]")
    _run(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=5",
          "-f", "lavfi", "-i", "color=black:size=320x180:rate=25:duration=2",
          "-f", "lavfi", "-i", "smptebars=size=320x180:rate=25:duration=5",
          "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
          "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono:d=3",
          "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000:duration=5",
          "-filter_complex", graph, "-map", "[v]", "-map", "[a]", *X264, *AAC, str(path)])
    return path


def silent_audio(path: Path) -> Path:
    """A valid video whose audio track is digital silence."""
    _run(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
          "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", *X264, *AAC, "-t", "3", str(path)])
    return path


def flat(path: Path, *, width: int = 1280, height: int = 720, duration: float = 6) -> Path:
    """A plain grey picture, no audio: every rung scores perfectly, so bigger rungs add nothing."""
    _run(["-f", "lavfi", "-i", f"color=c=gray:size={width}x{height}:rate=25:duration={duration}", *X264,
          str(path)])
    return path


SPOKEN_SENTENCE = "Hello world. The weather today is sunny and warm. Please open the door and turn on the light."


def speech(path: Path, text: str = SPOKEN_SENTENCE, *, duration: float = 10) -> Path:
    """testsrc2 over ``text`` spoken by espeak-ng (offline synthesis), padded with silence to ``duration``."""
    wav = path.with_suffix(".speech.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(wav), text], check=True,
                   stdout=subprocess.DEVNULL)
    _run(["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={duration}", "-i", str(wav),
          "-af", "apad", *X264, *AAC, "-t", str(duration), str(path)])
    wav.unlink()
    return path


def long_clip(path: Path, *, hours: float = 2.0, piece_seconds: int = 60) -> Path:
    """A ``hours``-long 256x144 H.264/AAC clip made in seconds: one ``piece_seconds`` clip (2 s GOPs),
    stream-copied end to end by the concat demuxer."""
    piece = path.with_suffix(".piece.mp4")
    _run(["-f", "lavfi", "-i", f"testsrc2=size=256x144:rate=25:duration={piece_seconds}",
          "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={piece_seconds}",
          *X264, "-g", "50", *AAC, str(piece)])
    listing = path.with_suffix(".txt")
    listing.write_text(f"file '{piece.name}'\n" * int(round(hours * 3600 / piece_seconds)))
    _run(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(path)])
    listing.unlink()
    piece.unlink()
    return path


def packet_offset(path: Path, at_seconds: float, stream: str = "v:0") -> int:
    """The byte offset in ``path`` of the first ``stream`` packet at or after ``at_seconds``."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-read_intervals",
                          f"{at_seconds}%+2", "-show_entries", "packet=pts_time,pos", "-of", "csv=p=0", str(path)],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        t, pos = line.split(",")[:2]
        if float(t) >= at_seconds and pos.isdigit():
            return int(pos)
    raise ValueError(f"no {stream} packet at {at_seconds}s in {path}")


def corrupt_at(src: Path, dest: Path, at_seconds: float, length: int = 6000) -> Path:
    """A copy of ``src`` with ``length`` bytes overwritten from the video packet at ``at_seconds``
    (the container index left intact: it probes fine, and only that stretch fails to decode)."""
    data = bytearray(src.read_bytes())
    offset = packet_offset(src, at_seconds)
    data[offset + 16:offset + 16 + length] = bytes((i * 37 + 11) % 256 for i in range(length))
    dest.write_bytes(bytes(data))
    return dest


def corrupt_middle(path: Path) -> Path:
    """60 s clip whose bytes at 30.0 s are overwritten: undecodable frames at 00:00:30."""
    full = path.with_suffix(".full.mp4")
    video(full, width=320, height=180, duration=60)
    corrupt_at(full, path, 30.0)
    full.unlink()
    return path


# ---------------------------------------------------------------- sources from cameras and editors

def anamorphic(path: Path) -> Path:
    """HDV: 1440x1080 coded, SAR 4:3, displayed 1920x1080 (16:9)."""
    _run(["-f", "lavfi", "-i", "testsrc2=size=1440x1080:rate=25:duration=2", "-f", "lavfi",
          "-i", "sine=frequency=440:sample_rate=48000:duration=2", "-vf", "setsar=4/3", *X264, *AAC, str(path)])
    return path


def interlaced(path: Path) -> Path:
    """1080i25, top field first: 50p motion woven into fields, coded interlaced and tagged tt."""
    _run(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=50:duration=2", "-f", "lavfi",
          "-i", "sine=frequency=440:sample_rate=48000:duration=2",
          "-vf", "tinterlace=mode=interleave_top,setfield=tff", *X264, "-flags", "+ilme+ildct", "-top", "1",
          "-field_order", "tt", *AAC, str(path)])
    return path


def hdr(path: Path, transfer: str) -> Path:
    """10-bit HEVC as phones record HDR: BT.2020 primaries and matrix, ``transfer`` smpte2084 (PQ) or
    arib-std-b67 (HLG), tagged in the stream and the container."""
    _run(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2", "-f", "lavfi",
          "-i", "sine=frequency=440:sample_rate=48000:duration=2", "-vf", "format=yuv420p10le",
          "-c:v", "libx265", "-preset", "ultrafast",
          "-x265-params", f"log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc",
          "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc", "-tag:v", "hvc1",
          *AAC, str(path)])
    return path


def with_audio(path: Path, codec: list[str], *, layout: str = "stereo", tracks: int = 1) -> Path:
    """A 320x180 H.264 clip with ``tracks`` audio tracks of ``codec`` in ``layout``; with two tracks the
    second (880 Hz) is the default one."""
    args = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2"]
    for i in range(tracks):
        args += ["-f", "lavfi", "-i", f"sine=frequency={440 * (i + 1)}:sample_rate=48000:duration=2"]
    args += ["-map", "0:v"]
    for i in range(tracks):
        args += ["-map", f"{i + 1}:a"]
    args += [*X264, "-af", f"aformat=channel_layouts={layout}", *codec]
    if tracks > 1:
        args += ["-disposition:a:0", "0", "-disposition:a:1", "default"]
    _run(args + [str(path)])
    return path


# ---------------------------------------------------------------- broken inputs

def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated(path: Path) -> Path:
    """A faststart MP4 (index first, so ffprobe still succeeds) cut in half."""
    full = path.with_suffix(".full.mp4")
    video(full, width=320, height=180, duration=4, faststart=True)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is not a video\n" * 50)
    return path


def png_still(path: Path) -> Path:
    _run(["-f", "lavfi", "-i", "testsrc2=size=320x180", "-frames:v", "1", str(path)])
    return path


def single_frame_mp4(path: Path) -> Path:
    _run(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-frames:v", "1", *X264, str(path)])
    return path


def audio_only(path: Path) -> Path:
    _run(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3", *AAC, str(path)])
    return path


FLASH_SIZE = "white@1:t=fill"


def flash_beep(path: Path, *, at: tuple[float, ...] = (3.0, 14.0, 27.0), duration: float = 30, fps: int = 25,
               width: int = 320, height: int = 180) -> Path:
    """testsrc2 that turns white for one frame at each instant of ``at`` (frame-exact: multiples of 1/fps), over
    silence with a 1 kHz beep of 40 ms starting at the same instants: A/V sync is readable at each of them."""
    frame = 1 / fps
    flashes = "+".join(f"between(t,{t - frame / 2:.4f},{t + frame / 2:.4f})" for t in at)
    beeps = "+".join(f"between(t,{t:.4f},{t + 0.04:.4f})" for t in at)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}",
            "-f", "lavfi", "-i", f"aevalsrc=exprs='if({beeps},0.8*sin(2*PI*1000*t),0)':s=48000:d={duration}",
            "-vf", f"drawbox=x=0:y=0:w=iw:h=ih:color={FLASH_SIZE}:enable='{flashes}'"]
    _run(args + X264 + ["-g", str(fps * 2)] + AAC + ["-t", str(duration), str(path)])
    return path


ALL = {
    "landscape.mp4": landscape, "portrait.mp4": portrait_rotated, "noaudio.mp4": no_audio,
    "short.mp4": very_short, "odd.mp4": odd_dimensions, "vfr.mp4": variable_frame_rate,
    "scenes.mp4": scenes_and_silence, "silent.mp4": silent_audio, "empty.mp4": zero_bytes,
    "truncated.mp4": truncated, "text.mp4": text_file, "still.png": png_still,
    "oneframe.mp4": single_frame_mp4, "audio.m4a": audio_only, "speech.mp4": speech,
    "corrupt_middle.mp4": corrupt_middle, "two_hours.mp4": long_clip,
    "anamorphic.mp4": anamorphic, "interlaced.mp4": interlaced,
    "hdr_pq.mp4": lambda p: hdr(p, "smpte2084"), "hdr_hlg.mp4": lambda p: hdr(p, "arib-std-b67"),
    "pcm.mov": lambda p: with_audio(p, ["-c:a", "pcm_s16le"]),
    "alac.mov": lambda p: with_audio(p, ["-c:a", "alac"]),
    "opus.mkv": lambda p: with_audio(p, ["-c:a", "libopus", "-b:a", "64k"]),
    "ac3.mkv": lambda p: with_audio(p, ["-c:a", "ac3", "-b:a", "192k"]),
    "surround.mp4": lambda p: with_audio(p, ["-c:a", "aac", "-b:a", "192k"], layout="5.1"),
    "multitrack.mkv": lambda p: with_audio(p, ["-c:a", "aac", "-b:a", "64k"], tracks=2),
}


def make_all(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {name: fn(directory / name) for name, fn in ALL.items()}
