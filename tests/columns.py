"""Column headers shared by the tests."""

from benchmarks.convert import COLUMNS

# tests/data/hr-suite-export.csv, in file order; the hr-suite mapping reads all of them.
HR_SUITE_HEADER = [
    "Employee ID",
    "First Name",
    "Preferred Name",
    "Last Name",
    "Work Email",
    "Job Title",
    "Employee Type",
    "Employment Status",
    "Work Phone",
    "Office Street",
    "Office City",
    "Office State",
    "Office Postal Code",
    "Office Country",
    "Department",
    "Cost Center",
    "Company",
    "Division",
    "Manager Employee ID",
    "Hire Date",
    "Termination Date",
    "Location",
]

# Microsoft's sample HR export, in file order (the benchmark generates the same columns).
MICROSOFT_HEADER = COLUMNS


def worker(worker_id: str | int, **overrides: str) -> dict[str, str]:
    """A valid worker in Microsoft's columns; keyword arguments replace columns."""
    n = str(worker_id)
    row = {
        "WorkerID": n,
        "WorkerStatus": "Active",
        "WorkerType": "Employee",
        "UserID": f"EMP{n}",
        "FirstName": f"Given{n}",
        "LastName": f"Family{n}",
        "FullName": f"Given{n} Family{n}",
        "GenderPronoun": "SHE/HER",
        "ManagerID": "",
        "HireDate": "2020-01-01",
        "OnLeave": "False",
        "Department": "Sales",
        "Division": "Food",
        "CostCenter": "CC1",
        "Company": "Woodgrove",
        "Location": "Europe",
        "JobTitle": "Engineer",
        "StreetAddress": "1 Main St",
        "City": "Paris",
        "CountryCode": "FR",
        "OfficePhone": "555-0100",
        "Custom01": "",
        "Custom02": "",
        "ZipCode": "75001",
    }
    unknown = set(overrides) - set(row)
    assert not unknown, unknown
    row.update(overrides)
    return row


def csv_bytes(rows: list[dict[str, str]], header: list[str] = MICROSOFT_HEADER) -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
