"""Column headers shared by the tests."""

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
