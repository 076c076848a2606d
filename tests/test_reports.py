"""Reports a person reads (provisioning/runs/reports.py): the rejected-rows CSV with its formula
injection defence, terminal-safe values, the run page (HTML escaping, status colours, plan,
outcomes) and the SVG chart. The CSV is written through the real staged blob on Azurite, as a
run writes it."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.convert.validation import RowError
from provisioning.graph.outcomes import TextToBlob
from provisioning.runs.claims import Results
from provisioning.runs.reports import (
    REJECTED_COLUMNS,
    RejectedCsv,
    bar_chart_svg,
    csv_safe,
    html_page,
    printable,
    render_run_html,
)
from provisioning.settings import RESULTS_CONTAINER
from provisioning.storage import BlobStore

if TYPE_CHECKING:
    from devtools.azurite import Azurite

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = "<script>alert('x')</script> & \"quoted\" <b>bold</b> </td></tr></table>"


@pytest.fixture
def store(clean_storage: Azurite) -> Iterator[BlobStore]:
    with BlobStore(BlobServiceClient.from_connection_string(clean_storage.connection_string)) as s:
        s.ensure_containers(RESULTS_CONTAINER)
        yield s


# --- csv_safe ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://evil","x")',
        "+1+2",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=1",
        "\r=1",
        "=",
    ],
)
def test_formula_starts_are_neutralised(text: str) -> None:
    assert csv_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["", "Alice", "1+1", " =1", "a=b", "'=x", "é@x", "\n=1"])
def test_other_text_is_left_exactly_as_written(text: str) -> None:
    assert csv_safe(text) == text


@given(st.text())
def test_csv_safe_never_starts_a_formula_and_keeps_the_text(text: str) -> None:
    safe = csv_safe(text)
    assert not safe.startswith(FORMULA_STARTS)
    assert safe in (text, "'" + text)  # only a prefix is ever added, nothing is lost
    assert (safe != text) == text.startswith(FORMULA_STARTS)
    assert csv_safe(safe) == safe  # idempotent


# --- the rejected-rows report, written to a staged blob ------------------------------------


def error(**overrides: Any) -> RowError:
    values: dict[str, Any] = {
        "file": "workers.csv",
        "record": 3,
        "line": 4,
        "column": "WorkerStatus",
        "attribute": "active",
        "reason": "not one of Active, Inactive",
        "value": "Maybe",
    }
    values.update(overrides)
    return RowError(**values)


def written(store: BlobStore, errors: list[RowError], name: str = "rejected.csv") -> bytes:
    blob = store.staged(RESULTS_CONTAINER, name)
    report = RejectedCsv(TextToBlob(blob))
    for item in errors:
        report(item)
    assert report.count == len(errors)
    blob.commit("text/csv; charset=utf-8")
    data = store.read_bytes(RESULTS_CONTAINER, name)
    assert data is not None
    return data


def test_rejected_rows_are_written_with_formula_safe_cells(store: BlobStore) -> None:
    errors = [
        error(),
        error(
            file="=cmd|' /C calc'!A0.csv",
            record=9,
            line=10,
            column="@Department",
            reason="-bad",
            value='=HYPERLINK("http://evil")',
        ),
        error(value="+33 1 23 45 67 89", column="OfficePhone", attribute="phoneNumbers.value"),
        error(value='line one\nline two, with "quotes"'),
    ]
    rows = list(csv.reader(io.StringIO(written(store, errors).decode("utf-8"))))
    assert rows[0] == list(REJECTED_COLUMNS)
    assert rows[1] == ["workers.csv", "3", "4", "WorkerStatus", "active", errors[0].reason, "Maybe"]
    assert rows[2] == [
        "'=cmd|' /C calc'!A0.csv",
        "9",
        "10",
        "'@Department",
        "active",
        "'-bad",
        '\'=HYPERLINK("http://evil")',
    ]
    assert rows[3][6] == "'+33 1 23 45 67 89"
    assert rows[4][6] == 'line one\nline two, with "quotes"'  # quoted, not split
    assert len(rows) == 5
    # No cell a spreadsheet would evaluate.
    assert not any(cell.startswith(FORMULA_STARTS) for row in rows for cell in row)


def test_a_lone_surrogate_is_written_escaped_not_a_crash(store: BlobStore) -> None:
    # A JSON file can carry "\ud800": Python reads it as a lone surrogate, which is not UTF-8.
    data = written(store, [error(value="a\ud800b", column="Name\udfff")])
    text = data.decode("utf-8")  # the blob is valid UTF-8
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][6] == "a\\ud800b" and rows[1][3] == "Name\\udfff"


def test_an_empty_report_has_its_header_only(store: BlobStore) -> None:
    rows = list(csv.reader(io.StringIO(written(store, []).decode("utf-8"))))
    assert rows == [list(REJECTED_COLUMNS)]


def test_a_report_larger_than_a_block_is_complete(store: BlobStore) -> None:
    errors = [error(record=n, line=n + 1, value="x" * 1000 + str(n)) for n in range(1, 6001)]
    data = written(store, errors)
    assert len(data) > 4 * 1024 * 1024  # several staged blocks
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert len(rows) == 6001
    assert [int(r[1]) for r in rows[1:]] == list(range(1, 6001))  # in write order


# --- printable -----------------------------------------------------------------------------


def test_printable_replaces_control_characters_and_bounds_the_length() -> None:
    assert printable("ok") == "ok"
    assert printable("a\x1b[31mred\x07\n") == "a\N{REPLACEMENT CHARACTER}[31mred" + (
        "\N{REPLACEMENT CHARACTER}" * 2
    )
    assert printable("x" * 40) == "x" * 40
    assert printable("x" * 41) == "x" * 39 + "\N{HORIZONTAL ELLIPSIS}"
    assert printable("abcdef", limit=4) == "abc\N{HORIZONTAL ELLIPSIS}"


@given(st.text(), st.integers(1, 80))
def test_printable_output_is_bounded_and_printable(text: str, limit: int) -> None:
    out = printable(text, limit)
    assert len(out) <= limit
    assert out.isprintable()
    if len(text) <= limit and text.isprintable():
        assert out == text


# --- the run page --------------------------------------------------------------------------


class Page(HTMLParser):
    """Tags (with attributes) and text of a page, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def summary(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "run_id": "20250131T120000-abcdef01-123456",
        "status": "partly-rejected",
        "source_blob": "hr-inbound/workers/day1.csv",
        "content_hash": "ab" * 32,
        "mapping": "builtin:microsoft-sample",
        "started": "2025-01-31T12:00:00.000Z",
        "finished": "2025-01-31T12:00:05.000Z",
        "duration_seconds": 5.0,
        "attempt": 1,
        "reason": "3 rows rejected by validation (rejected.csv)",
        "rows_read": 120,
        "rows_rejected": 3,
        "records_sent": 117,
        "records_accepted": 117,
        "records_rejected_by_graph": 0,
        "requests": 3,
        "rejections_by_attribute": {"active": 2, "userName": 1},
        "batches": [
            {
                "batch": 1,
                "status": "accepted",
                "http_status": 202,
                "operations": 50,
                "attempts": 1,
                "request_id": "rid-1",
            },
            {
                "batch": 2,
                "status": "rejected",
                "http_status": 400,
                "operations": 50,
                "attempts": 1,
                "request_id": "rid-2",
                "error_message": "Invalid Data Format",
                "resent_after_crash": True,
            },
        ],
        "plan": {
            "feed": "workers",
            "mode": "full",
            "counts": {"joiner": 5, "mover": 2, "leaver": 1, "unchanged": 100, "rejected": 3},
            "movers": [
                {"externalId": "7", "changed": ["title", "department"]},
                {"externalId": "8", "changed": ["title"]},
            ],
            "held": [{"externalId": "9", "kind": "joiner", "due": "2025-02-14"}],
            "held_for_approval": [],
            "leaver_threshold": 50,
            "manager_not_found": ["11", "12"],
        },
        "outcomes": {
            "status": "partly-failed",
            "updated": "2025-01-31T12:30:00Z",
            "counts": {"success": 115, "failure": 2},
            "failures": [
                {
                    "record": 4,
                    "line": 5,
                    "error_code": "AzureActiveDirectoryConflict",
                    "reason": "the userName is taken",
                    "recommended_action": "pick another",
                }
            ],
        },
    }
    values.update(overrides)
    return values


def badge_colour(html: str) -> str:
    match = re.search(
        r'<h1>Provisioning run <span class="b" style="background:(#[0-9a-f]{6})">', html
    )
    assert match, html[:400]
    return match.group(1)


@pytest.mark.parametrize(
    ("status", "colour"),
    [
        ("complete", "#107c10"),  # green
        ("partly-rejected", "#8a6100"),  # amber
        ("held-for-approval", "#8a6100"),  # amber
        ("rejected", "#a4262c"),  # red
        ("failed", "#a4262c"),  # red
        ("stopped", "#ca5010"),  # orange
        ("interrupted", "#ca5010"),  # orange
        ("duplicate", "#5c2d91"),  # purple
        ("running", "#0078d4"),
        ("superseded", "#605e5c"),  # grey
        ("nothing-due", "#605e5c"),  # grey
        ("something-new", "#605e5c"),  # an unknown status: grey, not a crash
    ],
)
def test_status_colour_follows_the_readme(status: str, colour: str) -> None:
    assert badge_colour(render_run_html(summary(status=status))) == colour


def test_the_page_shows_the_run_plan_outcomes_and_batches() -> None:
    page = Page(render_run_html(summary()))
    text = page.all_text
    for expected in (
        "20250131T120000-abcdef01-123456",
        "hr-inbound/workers/day1.csv",
        "3 rows rejected by validation (rejected.csv)",
        "Plan (feed workers, full)",
        "Entra outcomes: partly-failed",
        "AzureActiveDirectoryConflict",
        "Invalid Data Format (resent after a crash)",
        "2 workers have a manager who is neither in the file",
    ):
        assert expected in text, expected
    tags = [tag for tag, _ in page.tags]
    assert tags.count("svg") == 1 and "script" not in tags
    # Attributes changed by movers, most frequent first: title (2), department (1).
    changed = re.search(r"Attributes changed by movers(.*?)Held until a date", text, re.S)
    assert changed and changed.group(1).index("title") < changed.group(1).index("department")
    # Rejections by attribute, most frequent first.
    assert text.index("active2") < text.index("userName1")


def test_an_approval_wait_is_explained_and_missing_parts_are_left_out() -> None:
    plan = {**summary()["plan"], "held_for_approval": ["1", "2", "3"], "leaver_threshold": 2}
    text = Page(render_run_html(summary(plan=plan, outcomes=None))).all_text
    assert "3 leavers exceed the safety threshold of 2" in text
    assert "python -m provisioning approve RUN_ID" in text
    assert "Entra outcomes" not in text
    bare = render_run_html({"status": "running"})
    assert "Plan (feed" not in bare and "Entra outcomes" not in bare
    assert "<tr><th>Reason</th>" not in bare  # no row for what the summary does not say


def every_value(value: str) -> dict[str, Any]:
    """A summary with ``value`` in every place the page shows text of the summary."""
    return summary(
        run_id=value,
        status=value,
        source_blob=value,
        reason=value,
        mapping=value,
        rejections_by_attribute={value: 1},
        batches=[{"batch": value, "status": value, "request_id": value, "error_message": value}],
        plan={
            **summary()["plan"],
            "feed": value,
            "mode": value,
            "movers": [{"externalId": "1", "changed": [value]}],
            "held": [{"externalId": "1", "kind": value, "due": value}],
            "held_for_approval": ["1"],
            "leaver_threshold": value,
            "counts": {value: 1},
        },
        outcomes={
            "status": value,
            "updated": value,
            "counts": {value: 1},
            "failures": [
                {
                    "record": value,
                    "line": value,
                    "error_code": value,
                    "reason": value,
                    "recommended_action": value,
                }
            ],
        },
    )


def test_every_value_is_escaped() -> None:
    html = render_run_html(every_value(HOSTILE))
    page = Page(html)
    # The same structure as a harmless page: no tag came from the values ...
    harmless = Page(render_run_html(every_value("x")))
    assert [tag for tag, _ in page.tags] == [tag for tag, _ in harmless.tags]
    assert "<script>" not in html and "</td></tr></table> &" not in html
    # ... and every value reads back as written, in every place (counted with a marker).
    places = Page(render_run_html(every_value("\N{SNOWMAN}"))).all_text.count("\N{SNOWMAN}")
    assert places >= 25
    assert page.all_text.count(HOSTILE) == places


text_values = st.text(alphabet=st.sampled_from("<>&\"'/=ab \n"), max_size=30)


@given(run_id=text_values, reason=text_values, feed=text_values, attribute=text_values)
@settings(max_examples=150, deadline=None)
def test_values_never_change_the_page_structure(
    run_id: str, reason: str, feed: str, attribute: str
) -> None:
    def shape(**values: str) -> list[str]:
        plan = {
            **summary()["plan"],
            "feed": values["feed"],
            "movers": [{"externalId": "1", "changed": [values["attribute"] or "a"]}],
        }
        page = Page(
            render_run_html(
                summary(run_id=values["run_id"] or "r", reason=values["reason"] or "r", plan=plan)
            )
        )
        assert (values["reason"] or "r") in page.all_text
        return [tag for tag, _ in page.tags]

    assert shape(run_id=run_id, reason=reason, feed=feed, attribute=attribute) == shape(
        run_id="r", reason="r", feed="f", attribute="a"
    )


def test_a_page_with_a_lone_surrogate_can_be_written(store: BlobStore) -> None:
    results = Results(store, "runs/2025-01-31/x/")
    page = render_run_html(summary(reason="line 1: key '\ud800' appears twice in the first record"))
    results.write_text("report.html", page, "text/html; charset=utf-8")
    data = store.read_bytes(RESULTS_CONTAINER, "runs/2025-01-31/x/report.html")
    assert data is not None and b"appears twice" in data


# --- html_page and the chart ---------------------------------------------------------------


def test_html_page_escapes_the_title_and_keeps_the_body() -> None:
    html = html_page("Drift <report> & co", "<h1>Drift</h1><p>body</p>")
    assert "<title>Drift &lt;report&gt; &amp; co</title>" in html
    assert "<h1>Drift</h1><p>body</p>" in html
    page = Page(html)
    assert [t for t, _ in page.tags] == [
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "p",
    ]


def svg(counts: dict[str, int], width: int = 520) -> ET.Element:
    return ET.fromstring(bar_chart_svg(counts, width))


NS = "{http://www.w3.org/2000/svg}"


def test_bars_are_proportional_to_the_counts() -> None:
    root = svg({"joiner": 10, "leaver": 5, "unchanged": 0})
    bars = root.findall(f"{NS}rect")
    widths = [int(bar.get("width", "-1")) for bar in bars]
    room = 520 - 140 - 60
    assert widths == [room, room // 2, 0]
    assert [bar.get("fill") for bar in bars] == ["#107c10", "#a4262c", "#8a8886"]
    assert root.get("height") == str(26 * 3)
    titles = [bar.find(f"{NS}title") for bar in bars]
    assert [t.text if t is not None else None for t in titles] == [
        "joiner: 10",
        "leaver: 5",
        "unchanged: 0",
    ]


def test_a_chart_of_zeros_or_nothing_is_valid() -> None:
    zeros = svg({"joiner": 0, "mover": 0})
    assert [r.get("width") for r in zeros.findall(f"{NS}rect")] == ["0", "0"]
    empty = svg({})
    assert empty.findall(f"{NS}rect") == [] and empty.get("height") == "0"


def test_chart_labels_are_escaped_and_unknown_names_grey() -> None:
    root = svg({"<b>&x": 3, "enabled leavers": 1})
    labels = [t.text for t in root.findall(f"{NS}text")]
    assert labels[0] == "<b>&x"  # read back as text: it was escaped in the markup
    assert all(r.get("fill") == "#605e5c" for r in root.findall(f"{NS}rect"))
    assert "script" not in bar_chart_svg({"<script>": 1}).replace("&lt;script&gt;", "")


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(0, 10_000), max_size=12))
@settings(max_examples=150, deadline=None)
def test_any_counts_make_well_formed_svg_within_its_width(counts: dict[str, int]) -> None:
    # XML 1.0 cannot carry most control characters, escaped or not: leave them out.
    counts = {k: v for k, v in counts.items() if all(c.isprintable() for c in k)}
    root = ET.fromstring(bar_chart_svg(counts))
    widths = [int(r.get("width", "-1")) for r in root.findall(f"{NS}rect")]
    assert len(widths) == len(counts)
    assert all(0 <= w <= 520 - 200 for w in widths)
    if counts and max(counts.values()) > 0:
        assert max(widths) == 520 - 200
