"""Property: on random HR rows the pipeline never crashes and accounts for every row."""

from __future__ import annotations

import csv
import io
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.convert.bulk import MAX_OPERATIONS
from provisioning.convert.mapping import load_mapping
from provisioning.convert.pipeline import Conversion, Source
from provisioning.convert.validation import RowError

MAPPING = load_mapping("microsoft-sample")
COLUMNS = MAPPING.columns

cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["Active", "Inactive", "active", " Active ", "", "=1+1", "@x", "-5"]),
    st.text(alphabet=string.digits, min_size=1, max_size=4),
)
row = st.fixed_dictionaries({c: cell for c in COLUMNS})


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, max_size=120))
def test_every_row_is_mapped_or_rejected_with_a_reason(rows: list[dict[str, str]]) -> None:
    data = _csv(rows)
    errors: list[RowError] = []
    source = Source("random.csv", lambda: io.BytesIO(data))
    conversion = Conversion(source, MAPPING, on_reject=errors.append)
    requests = list(conversion.requests())
    summary = conversion.summary

    sent_lines = [op.line for r in requests for op in r.operations]
    rejected_lines = {e.line for e in errors}
    assert all(e.reason for e in errors)
    assert all(len(r.operations) <= MAX_OPERATIONS for r in requests)
    # None lost, none doubled: each data row is either in exactly one operation or rejected.
    assert len(sent_lines) == len(set(sent_lines))
    assert not rejected_lines & set(sent_lines)
    assert summary.rows_read == summary.users + summary.rows_rejected
    assert summary.users == len(sent_lines)
    assert summary.rows_rejected == len(rejected_lines)
    # Only rows whose cells are all blank are skipped (as blank lines); every other is read.
    assert summary.rows_read == sum(1 for r in rows if "".join(r.values()).strip())
    ids = [op.external_id for r in requests for op in r.operations]
    assert len(ids) == len(set(ids)), "an externalId was sent twice from one file"
