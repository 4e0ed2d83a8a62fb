"""The decoder fuzzer (tests/fuzz/fuzz_decoder.py) at a fixed seed: every mutated file of every format decodes to
an RGB photo or is refused with ImageError, never another exception. Hangs and crashes are the script's to find
(it runs cases in a worker process with a time bound); here a few hundred cases run in the test process."""

from collections import Counter

from fuzz.fuzz_decoder import FORMATS, case, outcome, seeds

CASES = 1000


def test_the_seed_files_cover_the_formats_and_decode():
    formats = {fmt for fmt, _ in seeds()}
    assert {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO"} <= formats <= set(FORMATS)


def test_mutated_files_decode_or_are_refused_with_image_error(tmp_path):
    results = Counter()
    findings = []
    for index in range(CASES):
        suffix, data = case(seed=26, index=index)
        assert case(seed=26, index=index) == (suffix, data)  # a case can be made again from its numbers
        result = outcome(suffix, data, tmp_path)
        results[result if result in ("ok", "refused") else "finding"] += 1
        if result not in ("ok", "refused"):
            findings.append(f"case {index} ({suffix}): {result}")
    assert findings == [], "\n".join(findings)
    assert results["ok"] > CASES // 10 and results["refused"] > CASES // 10  # mutations neither all fatal nor all harmless
