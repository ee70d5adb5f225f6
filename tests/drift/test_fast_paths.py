"""The engine's fast paths count exactly what the careful paths count.

- SageMaker's canonical CSV records are recognised by one pattern (no JSON parsing); any other line sends its whole
  file through the JSON parser, which counts what is wrong.
- Plain numeric rows are parsed by numpy's C reader; anything it refuses goes cell by cell.
- Numeric values are counted on the grid by sorting them, not by placing each one.
- Worker processes read the files they score themselves (a local path, or S3 with the caller's access).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from mlinfra_drift import records
from mlinfra_drift.baseline import numeric_feature, summary
from mlinfra_drift.capture import CaptureFile, LocalCapture, S3Access, S3Capture, capture_key
from mlinfra_drift.parallel import FILES_PER_WORKER, auto_workers, plan
from mlinfra_drift.records import Decoder
from mlinfra_drift.score import NumericCounts, Scorer
from mlinfra_drift.scoring import score
from tests.drift.helpers import END, START, baseline_of, record

NUMERIC = ["a", "b", "c"]


def numeric_baseline() -> Any:
    rng = np.random.default_rng(11)
    return baseline_of({name: rng.normal(size=400).round(2).tolist() for name in NUMERIC})


def loose(line: str) -> str:
    """The same record, re-serialised with spaces: valid JSON that the canonical pattern does not take."""
    return json.dumps(json.loads(line))


def scored(lines: list[str], baseline: Any) -> Any:
    scorer = Scorer(baseline)
    scorer.add_file(CaptureFile("f.jsonl", ("\n".join(lines) + "\n").encode(), edge=False))
    return scorer.report(model="m", stage="s", version=1, start=START, end=END, thresholds=_thresholds())


def _thresholds() -> Any:
    from mlinfra_drift.report import Thresholds

    return Thresholds()


def same_report(one: Any, two: Any) -> None:
    assert one.to_json_dict() == two.to_json_dict()
    assert [f.bins for f in one.features] == [f.bins for f in two.features]
    assert one.refused_widths == two.refused_widths


def test_canonical_records_skip_the_json_parser_and_score_the_same() -> None:
    rng = np.random.default_rng(3)
    lines = [record(",".join(f"{v:.4f}" for v in rng.normal(size=3))) for _ in range(500)]
    batch = Decoder(NUMERIC, Counter()).decode(("\n".join(lines) + "\n").encode())
    assert batch.block_rows == 500 and not batch.text_rows and not batch.rows
    loose_batch = Decoder(NUMERIC, Counter()).decode("\n".join(map(loose, lines)).encode())
    assert loose_batch.block_rows == 0 and len(loose_batch.text_rows) == 500
    same_report(scored(lines, numeric_baseline()), scored([loose(line) for line in lines], numeric_baseline()))


@pytest.mark.parametrize(
    "line",
    [
        # No endpointOutput (a capture of the input only), extra metadata on both sides of inferenceTime.
        '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2,3",'
        '"encoding":"CSV"}},"eventMetadata":{"eventId":"e","inferenceId":"i","inferenceTime":"2026-11-26T10:00:00Z",'
        '"x":"y"},"eventVersion":"0"}',
        # An output that is JSON with escapes, and CRLF line ends.
        '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2,3",'
        '"encoding":"CSV"},"endpointOutput":{"observedContentType":"application/json","mode":"OUTPUT",'
        '"data":"{\\"p\\": [0.5], \\"who\\": \\"\\u00e9\\\\n\\"}","encoding":"JSON"}},'
        '"eventMetadata":{"eventId":"e","inferenceTime":"2026-11-26T10:00:00.123Z"},"eventVersion":"0"}\r',
    ],
)
def test_the_canonical_pattern_takes_sagemakers_variations(line: str) -> None:
    json.loads(line)  # the test's own line is valid JSON
    batch = Decoder(NUMERIC, Counter()).decode((line + "\n" + line + "\n").encode())
    assert batch.block_rows == 2
    assert batch.block == b"1,2,3\n1,2,3"


@pytest.mark.parametrize(
    "odd",
    [
        record("1,2,3")[:-20],  # truncated
        record("1,2,3").replace('"mode":"INPUT"', '"mode":"INPUT","mode":"INPUT"'),  # not the canonical shape
        record("1,2,3").replace('"eventVersion":"0"}', '"eventVersion":"0"}}'),  # trailing garbage
        record("1,2,3").replace('"eventId":"', '"eventId":"\x01'),  # a raw control character: not JSON
        record("1,2,3").replace('"eventId":"', '"eventId":"\\x'),  # an invalid escape: not JSON
        record('1,"2",3'),  # an escaped quote in the input
        record("1,2,3\n4,5,6"),  # two rows in one request
        "",  # a blank line
    ],
)
def test_one_line_off_the_pattern_sends_the_file_to_the_parser(odd: str) -> None:
    rng = np.random.default_rng(4)
    good = [record(",".join(f"{v:.3f}" for v in rng.normal(size=3))) for _ in range(20)]
    lines = [*good[:10], odd, *good[10:]]
    malformed: Counter[str] = Counter()
    batch = Decoder(NUMERIC, malformed).decode("\n".join(lines).encode())
    assert batch.block_rows == 0  # the careful path decided
    careful = scored(lines, numeric_baseline())
    assert careful.rows >= 20
    # The careful path's counts are what the fast path would give without the odd line.
    assert scored(good, numeric_baseline()).rows == 20


def test_the_fast_path_counts_malformed_rows_like_the_parser() -> None:
    cells = ["1,2,3", "1,2", "1,2,3,4", "x,2,3", "NA,2,3", ",2,3", "inf,2,3", " 1.5,2e3,+3", "0x10,1,2", "1_0,1,2"]
    lines = [record(c) for c in cells]
    fast, careful = scored(lines, numeric_baseline()), scored([loose(line) for line in lines], numeric_baseline())
    same_report(fast, careful)
    # "1_0" is a number to Python's float() (the careful path), so both paths take it.
    assert fast.malformed == {records.WRONG_WIDTH: 2, records.NON_NUMERIC: 2}
    assert fast.rows == len(cells) - 4


def test_numpy_reader_and_cell_by_cell_parse_agree() -> None:
    tokens = ["1.5", " 1.5", "1.5 ", "-0", "1e3", "+2", "nan", "inf", "-inf", "NA", "", "null", "0x10", "1_000", "abc"]
    rng = np.random.default_rng(9)
    rows = [",".join(rng.choice(tokens, size=3)) for _ in range(400)]
    baseline = numeric_baseline()
    by_block, by_cells = Scorer(baseline), Scorer(baseline)
    for start in range(0, 400, 20):  # small batches: some parse whole, most go cell by cell
        chunk = rows[start : start + 20]
        block = records.Batch(block=("\n".join(chunk)).encode(), block_rows=len(chunk))
        by_block.add_batch(block)
        by_cells.add_rows([row.split(",") for row in chunk])
    window = {"model": "m", "stage": "s", "version": 1, "start": START, "end": END, "thresholds": _thresholds()}
    same_report(by_block.report(**window), by_cells.report(**window))
    assert by_block.malformed == by_cells.malformed and by_block.malformed[records.NON_NUMERIC] > 0


def test_sorted_counting_matches_placing_each_value() -> None:
    rng = np.random.default_rng(21)
    reference = np.concatenate([rng.normal(size=5000).round(2), np.full(300, 0.5)])
    doc = summary(
        {"x": numeric_feature(reference, reference.size)},
        rows=reference.size,
        source="t",
        fmt="csv",
        truncated=False,
        max_rows=10**6,
    )
    from mlinfra_drift.baseline import Baseline

    counts = NumericCounts(Baseline.from_json(json.dumps(doc)).columns["x"])
    grid = counts.x
    values = np.concatenate(
        [rng.normal(size=20_000).round(2), grid[::7], [np.nan, np.inf, -np.inf, grid[0] - 1, grid[-1] + 1]]
    )
    for chunk in np.array_split(values, 7):
        counts.add(chunk)
    finite = values[np.isfinite(values)]
    placed = np.searchsorted(grid, finite, side="left")  # grid points strictly below each value
    assert counts.below.tolist() == np.bincount(placed, minlength=grid.size + 1).tolist()
    assert counts.at.tolist() == [int(np.count_nonzero(finite == point)) for point in grid]
    assert counts.missing == 3


def test_auto_workers_repay_their_start() -> None:
    assert auto_workers(0, cpus=8) == 1
    assert auto_workers(FILES_PER_WORKER * 2 - 1, cpus=8) == 1
    assert auto_workers(FILES_PER_WORKER * 2, cpus=8) == 2
    assert auto_workers(10_000, cpus=2) == 2
    assert auto_workers(10_000, cpus=64) == 8  # MAX_WORKERS
    locations = [(f"k{i}", i % 5 == 0) for i in range(100)]
    workers, again = plan(iter(locations), None)
    assert list(again) == locations  # the files peeked at to decide are not lost
    assert 1 <= workers <= 8
    assert plan(iter(locations), 3)[0] == 3


def _capture_files(s3: Any, count: int) -> None:
    rng = np.random.default_rng(8)
    for index in range(count):
        when = START + timedelta(minutes=7 * index)
        lines = [record(",".join(f"{v:.3f}" for v in rng.normal(size=3))) for _ in range(50)]
        if index == 3:
            lines.append("{truncated")
        key = capture_key("capture/m", "ep", "primary", when, f"f{index}")
        s3.put_object(Bucket="registry", Key=key, Body=("\n".join(lines) + "\n").encode())


@pytest.mark.emulator
def test_workers_download_what_they_score_and_count_the_same(aws_env: str) -> None:
    session = boto3.Session(region_name="eu-west-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="registry", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    _capture_files(s3, 12)
    baseline = numeric_baseline()
    end = START + timedelta(hours=2)
    one = S3Capture(s3, "registry", "capture/m", START, end)
    two = S3Capture(s3, "registry", "capture/m", START, end, access=S3Access.of(session, s3))
    gets: list[str] = []
    s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: gets.append(params["Key"]))
    first, second = score(one, baseline), score(two, baseline, workers=2)
    assert len(gets) == 12  # the single process read every file; the workers read theirs with their own clients
    same_report(first, second)
    assert second.rows == 600 and second.malformed == {records.INVALID_JSON: 1}
    assert (two.files, two.bytes_read, two.last_key) == (one.files, one.bytes_read, one.last_key)
    assert second.workers == 2 and second.worker_peak_rss > 0


def test_local_workers_read_their_own_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for index in range(2 * FILES_PER_WORKER):
        when = START + timedelta(minutes=5 * index)
        lines = [record(",".join(f"{v:.2f}" for v in rng.normal(size=3))) for _ in range(30)]
        path = tmp_path / capture_key("capture", "ep", "primary", when, f"f{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    baseline = numeric_baseline()
    single = LocalCapture(tmp_path / "capture", START, END)
    auto = LocalCapture(tmp_path / "capture", START, END)
    first, chosen = score(single, baseline), score(auto, baseline, workers=None)
    same_report(first, chosen)
    assert chosen.workers == auto_workers(2 * FILES_PER_WORKER)  # 2 on a machine with 2 usable CPUs or more
    assert first.rows == chosen.rows == 16 * 30
    assert (auto.files, auto.bytes_read) == (single.files, single.bytes_read)
    assert auto.files == 16


def _die(path: str) -> bytes:
    """A fetcher whose worker process dies on its first file (as one the kernel kills for memory would)."""
    import os

    os._exit(9)


class _DyingCapture(LocalCapture):
    def fetcher(self) -> Any:
        return _die


def test_a_worker_that_dies_fails_the_run_in_one_line(tmp_path: Path) -> None:
    from mlinfra_drift.parallel import WorkerDiedError

    for index in range(4):
        path = tmp_path / capture_key("capture", "ep", "primary", START + timedelta(minutes=index), f"f{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(record("1,2,3") + "\n")
    with pytest.raises(WorkerDiedError, match="rerun with --workers 1"):
        score(_DyingCapture(tmp_path / "capture", START, END), numeric_baseline(), workers=2)


def test_a_hostile_line_costs_linear_time() -> None:
    # Many metadata pairs and no proper end: a pattern that backtracks over them took minutes on 64,000 pairs.
    import time

    pairs = ",".join(f'"inferenceTime":"{i}"' for i in range(64_000))
    line = record("1,2,3").replace('"eventMetadata":{', '"eventMetadata":{' + pairs + ",")[:-2]
    started = time.perf_counter()
    malformed: Counter[str] = Counter()
    batch = Decoder(NUMERIC, malformed).decode(line.encode())
    assert time.perf_counter() - started < 10  # linear: a tenth of a second here
    assert len(batch) == 0 and malformed == {records.INVALID_JSON: 1}


def test_one_feature_rows_keep_an_empty_last_row() -> None:
    baseline = baseline_of({"x": [1.0, 2.0, 3.0, 4.0]})
    for cells in (["1", ""], ["", "1"], ["1", "", "x"], ["", ""]):
        lines = [record(cell) for cell in cells]
        fast = scored(lines, baseline)
        careful = scored([loose(line) for line in lines], baseline)
        same_report(fast, careful)
        assert fast.features[0].missing_rate is not None and fast.features[0].missing_rate > 0, cells


def test_a_body_ending_in_a_line_break_takes_the_fast_path() -> None:
    rng = np.random.default_rng(6)
    lines = [record(",".join(f"{v:.3f}" for v in rng.normal(size=3)) + end) for end in ("\n", "\r\n", "") * 40]
    batch = Decoder(NUMERIC, Counter()).decode("\n".join(lines).encode())
    assert batch.block_rows == 120 and b"\\" not in batch.block
    same_report(scored(lines, numeric_baseline()), scored([loose(line) for line in lines], numeric_baseline()))


def test_rows_without_numbers_and_control_characters_count_the_same_anywhere() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not reach the user
        empty = scored([record(""), record("")], numeric_baseline())
    assert empty.rows == 0 and empty.malformed == {}
    # "\u001c7" arrives through the JSON parser: numpy's reader would skip the control character, float() refuses.
    odd = loose(record("1,2,3")).replace('"1,2,3"', '"\\u001c7,2,3"')
    alone, beside = scored([odd], numeric_baseline()), scored([odd, loose(record("x,3,4"))], numeric_baseline())
    assert alone.malformed == {records.NON_NUMERIC: 1} and alone.rows == 0
    assert beside.malformed == {records.NON_NUMERIC: 2} and beside.rows == 0


def test_cgroup_quota_caps_the_cpus(tmp_path: Path) -> None:
    from mlinfra_drift.parallel import cgroup_cpu_quota, usable_cpus

    assert cgroup_cpu_quota(tmp_path) is None  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a container limited to 1.5 CPUs
    assert cgroup_cpu_quota(tmp_path) == 1
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 4
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_workers_get_the_credentials_as_they_are_when_each_file_is_sent() -> None:
    import pickle

    import botocore.session

    from mlinfra_drift.capture import S3Fetcher

    core = botocore.session.get_session()
    core.set_credentials("AKIAFIRST", "first-secret", "first-token")
    session = boto3.Session(botocore_session=core, region_name="eu-west-1")
    capture = S3Capture(
        session.client("s3"), "registry", "capture/m", START, END, access=S3Access.of(session, session.client("s3"))
    )
    first = capture.fetcher()
    core.set_credentials("AKIASECOND", "second-secret", "second-token")  # renewed, as SSO or a role would be
    second = capture.fetcher()
    assert isinstance(first, S3Fetcher) and isinstance(second, S3Fetcher)
    assert (first.access.access_key, second.access.access_key) == ("AKIAFIRST", "AKIASECOND")
    sent = pickle.loads(pickle.dumps(second))  # noqa: S301 - what a worker receives: keys, no session
    assert sent == second and sent.access.session is None and sent.access.token == "second-token"


def test_a_worker_does_not_outlive_its_parent(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    script = """
import os
from concurrent.futures import ProcessPoolExecutor
from mlinfra_drift import parallel
if __name__ == "__main__":
    context = parallel._context(None)
    start = (BASELINE, START, END)
    with ProcessPoolExecutor(1, mp_context=context, initializer=parallel._start, initargs=start) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        os.kill(os.getpid(), 9)
"""
    baseline = numeric_baseline().model_dump_json(by_alias=True)
    program = tmp_path / "parent.py"
    program.write_text(f"BASELINE = {baseline!r}\nimport datetime\nSTART, END = {START!r}, {END!r}\n{script}")
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    worker = int(done.stdout.split()[0])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{worker}/stat").read_text().split(")")[1].split()[0]
        except OSError:
            return  # gone
        if state == "Z":
            return  # exited, not yet reaped
        time.sleep(0.1)
    os.kill(worker, 9)
    raise AssertionError(f"worker {worker} outlived its killed parent")
