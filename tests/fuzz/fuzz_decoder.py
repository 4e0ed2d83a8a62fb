"""A seeded mutation fuzzer over the decoder of untrusted files (vithybrid.images.load_image).

Every case is a small image file in one of the formats Pillow opens here (JPEG, PNG, WebP, GIF, BMP, TIFF, ICO,
and a few more it writes), carrying EXIF, ICC and XMP metadata where the format has room for it, then mutated:
bits flipped, bytes set to edge values, truncated, a range repeated or dropped, random bytes inserted, or a
(mutated) EXIF, ICC or XMP segment spliced in. A case passes when load_image returns an RGB image or raises
ImageError; anything else is a finding: another exception, a hang (no answer within --timeout seconds) or a
crash of the process. Cases are a function of (seed, index) alone, so any case can be made again.

    python tests/fuzz/fuzz_decoder.py [--cases 5000] [--seed 0] [--timeout 10] [--keep tests/data/decoder]

Cases run in a worker process that the script restarts after a hang or a crash. Each finding's file is written to
--keep (tests/test_images.py loads every file there and expects ImageError), and the script exits with status 1
if there was any. tests/test_fuzz_decoder.py runs a few hundred cases in the test process on every test run.
"""

from __future__ import annotations

import argparse
import functools
import io
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this checkout's vithybrid, whatever is installed

from vithybrid.images import ImageError, load_image  # noqa: E402

REGRESSIONS = ROOT / "tests" / "data" / "decoder"
FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "PPM", "TGA", "PCX", "SGI", "DDS"]
SUFFIXES = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff", "ICO": "ico",
            "PPM": "ppm", "TGA": "tga", "PCX": "pcx", "SGI": "sgi", "DDS": "dds"}
EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def exif_block(nested: bool = True) -> bytes:
    """An EXIF block (TIFF structure) with orientation, text, rational and (nested) sub-IFD tags: a parser has
    work. (libtiff cannot write the sub-IFDs into a TIFF file.)"""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "camera"  # make (ASCII)
    exif[0x011A] = 72.0  # x resolution (RATIONAL)
    exif[0x0131] = "fuzz"  # software
    if nested:
        exif.get_ifd(0x8769)[0x9003] = "2024:01:01 00:00:00"  # Exif IFD: date taken
        exif.get_ifd(0x8825)[0x0001] = "N"  # GPS IFD
    return exif.tobytes()


@functools.cache
def icc_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def picture(mode: str = "RGB", size: tuple[int, int] = (24, 16)) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata([(x * 10 % 256, y * 15 % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])])
    return image.convert(mode)


@functools.cache
def seeds() -> list[tuple[str, bytes]]:
    """The files the mutations start from: (format, bytes), with metadata where the format takes it."""
    exif, icc = exif_block(), icc_profile()
    recipes = [
        ("JPEG", picture(), {"exif": exif, "icc_profile": icc, "xmp": XMP, "quality": 80}),
        ("JPEG", picture("L"), {"progressive": True, "exif": exif}),
        ("JPEG", picture("CMYK"), {}),
        ("PNG", picture("RGBA"), {"exif": exif, "icc_profile": icc}),
        ("PNG", picture("P"), {"transparency": 0}),
        ("PNG", picture("I;16"), {}),
        ("WEBP", picture(), {"exif": exif, "icc_profile": icc, "xmp": XMP}),
        ("WEBP", picture("RGBA"), {"lossless": True}),
        ("GIF", picture("P"), {"save_all": True, "append_images": [picture("P").rotate(90)], "duration": 50}),
        ("BMP", picture(), {}),
        ("BMP", picture("P"), {}),
        ("TIFF", picture(), {"exif": exif_block(nested=False), "icc_profile": icc, "compression": "tiff_lzw"}),
        ("TIFF", picture("F"), {"save_all": True, "append_images": [picture("F")]}),
        ("ICO", picture("RGBA", (32, 32)), {"sizes": [(16, 16), (32, 32)]}),
    ] + [(fmt, picture(), {}) for fmt in FORMATS[7:]]
    made = []
    for fmt, image, options in recipes:
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt, **options)
        except (OSError, KeyError, ValueError):  # a format this Pillow cannot write: fuzzed through the others
            continue
        made.append((fmt, buffer.getvalue()))
    return made


def mutated_segment(rng: random.Random) -> bytes:
    """An EXIF, ICC or XMP payload, often with a few bytes changed (tag ids, types, counts, offsets)."""
    payload = rng.choice([b"Exif\0\0" + exif_block(), icc_profile(), b"http://ns.adobe.com/xap/1.0/\0" + XMP])
    return flip_bytes(rng, payload, rng.randint(0, 4))


def flip_bytes(rng: random.Random, data: bytes, count: int) -> bytes:
    data = bytearray(data)
    for _ in range(count):
        if data:
            position = rng.randrange(len(data))
            data[position] = rng.choice(EDGE_BYTES) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(data)


def splice(rng: random.Random, data: bytes, fmt: str) -> bytes:
    """A metadata segment put where the format keeps it (JPEG: an APP1/APP2 segment after SOI; PNG: a chunk after
    IHDR, with a correct CRC) or, for the others, anywhere."""
    segment = mutated_segment(rng)[:65000]
    if fmt == "JPEG":
        marker = b"\xff\xe1" if not segment.startswith(b"\0\0") else b"\xff\xe2"
        if marker == b"\xff\xe2":
            segment = b"ICC_PROFILE\0\x01\x01" + segment
        return data[:2] + marker + (len(segment) + 2).to_bytes(2, "big") + segment + data[2:]
    if fmt == "PNG":
        import zlib

        kind = rng.choice([b"eXIf", b"iCCP", b"iTXt", b"zTXt"])
        body = segment[6:] if kind == b"eXIf" else b"name\0\0" + zlib.compress(segment)
        chunk = len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        return data[:33] + chunk + data[33:]
    at = rng.randrange(len(data) + 1)
    return data[:at] + segment + data[at:]


def mutate(rng: random.Random, data: bytes, fmt: str) -> bytes:
    if len(data) < 2:  # cut to nothing by an earlier mutation
        return data + rng.randbytes(rng.randint(1, 32))
    kind = rng.choice(["flip bits", "edge bytes", "truncate", "repeat", "drop", "insert", "splice"])
    if kind == "flip bits":
        data = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        return bytes(data)
    if kind == "edge bytes":
        return flip_bytes(rng, data, rng.randint(1, 4))
    if kind == "truncate":
        return data[:rng.randrange(1, len(data))]
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 64))
    if kind == "repeat":
        return data[:end] + data[start:end] * rng.randint(1, 8) + data[end:]
    if kind == "drop":
        return data[:start] + data[end:]
    if kind == "insert":
        return data[:start] + rng.randbytes(rng.randint(1, 32)) + data[start:]
    return splice(rng, data, fmt)


def case(seed: int, index: int) -> tuple[str, bytes]:
    """Case `index` of the run with `seed`: (file suffix, bytes), the same on every call."""
    rng = random.Random(f"{seed}:{index}")
    fmt, data = rng.choice(seeds())
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data = mutate(rng, data, fmt)
    return SUFFIXES[fmt], data


def outcome(suffix: str, data: bytes, folder: Path) -> str:
    """'ok' (an RGB image), 'refused' (ImageError), or the other exception's type and message: a finding."""
    path = folder / f"case.{suffix}"
    path.write_bytes(data)
    try:
        photo = load_image(path)
    except ImageError:
        return "refused"
    except Exception as error:  # noqa: BLE001 - what the fuzzer looks for
        return f"{type(error).__module__}.{type(error).__qualname__}: {str(error)[:200]}"
    return "ok" if photo.mode == "RGB" and min(photo.size) >= 1 else f"not an RGB photo: {photo.mode} {photo.size}"


def worker(connection, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        while (index := connection.recv()) is not None:
            connection.send(outcome(*case(seed, index), Path(folder)))


class Runner:
    """Cases in a worker process, restarted after a crash or a hang."""

    def __init__(self, seed: int, timeout: float):
        self.seed, self.timeout, self.process = seed, timeout, None

    def start(self) -> None:
        self.connection, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=worker, args=(child, self.seed), daemon=True)
        self.process.start()

    def __call__(self, index: int) -> str:
        if self.process is None:
            self.start()
        self.connection.send(index)
        if self.connection.poll(self.timeout):
            try:
                return self.connection.recv()
            except EOFError:
                pass
        else:
            self.process.kill()
        self.process.join()
        code, self.process = self.process.exitcode, None
        return f"hang (no answer in {self.timeout:g} s)" if code == -9 else f"crash (exit status {code})"

    def stop(self) -> None:
        if self.process is not None:
            self.connection.send(None)
            self.process.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first case index (to go on from an earlier run)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a case may take before it is a hang")
    parser.add_argument("--keep", type=Path, default=REGRESSIONS, help="folder for the files of findings")
    args = parser.parse_args(argv)
    runner, findings, counts, began = Runner(args.seed, args.timeout), 0, {"ok": 0, "refused": 0}, time.monotonic()
    try:
        for index in range(args.start, args.start + args.cases):
            result = runner(index)
            if result in counts:
                counts[result] += 1
                continue
            findings += 1
            suffix, data = case(args.seed, index)
            args.keep.mkdir(parents=True, exist_ok=True)
            path = args.keep / f"fuzz-{args.seed}-{index}.{suffix}"
            path.write_bytes(data)
            print(f"case {index}: {result} -> {path}", flush=True)
    finally:
        runner.stop()
    print(f"{args.cases} cases (seed {args.seed}) in {time.monotonic() - began:.0f} s: {counts['ok']} decoded, "
          f"{counts['refused']} refused with ImageError, {findings} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
