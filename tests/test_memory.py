"""Memory of the whole conversion does not grow with the file (beyond 8 bytes per id)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from benchmarks.convert import generate
from provisioning.convert.mapping import load_mapping
from provisioning.convert.pipeline import Conversion, Source


def _peak(path: Path) -> tuple[int, int]:
    conversion = Conversion(Source.from_path(path), load_mapping("microsoft-sample"))
    tracemalloc.start()
    try:
        size = sum(len(request.body) for request in conversion.requests())
        return tracemalloc.get_traced_memory()[1], size
    finally:
        tracemalloc.stop()


def test_peak_memory_is_flat_in_file_size(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    generate(small, 5_000, seed=1)
    generate(large, 50_000, seed=1)
    small_peak, small_json = _peak(small)
    large_peak, large_json = _peak(large)
    assert large_json > 9 * small_json  # ten times the rows really went through
    # 45,000 more rows may add their 8-byte id hashes (~0.4 MB) and allocator noise, no more;
    # holding the rows or the requests would add tens of MB.
    assert large_peak - small_peak < 2_000_000, (small_peak, large_peak)
    assert large_peak < 8_000_000
