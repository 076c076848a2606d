"""The declarative attribute mapping (provisioning/convert/ mapping, document, compile, bind)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioning.convert.mapping import Mapping, load_mapping, parse_mapping
from provisioning.convert.rows import FileError
from provisioning.convert.transforms import SpecError
from provisioning.convert.validation import CORE, ENTERPRISE

CONTOSO = "urn:ietf:params:scim:schemas:extension:contoso:1.0:User"


def compile_text(text: str) -> Mapping:
    return parse_mapping(text, name="test", source="test")


def build(mapping: Mapping | str, row: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Build one user from a row given as {column: value}; errors as {attribute path: reason}."""
    if isinstance(mapping, str):
        mapping = compile_text(mapping)
    header = list(row)
    bound = mapping.bind(header)
    errors: list[Any] = []
    user = bound.build([row[c] for c in header], errors)
    # schemas always leads and always names the core URN; its extension logic is tested apart.
    assert next(iter(user)) == "schemas" and user["schemas"][0] == CORE
    del user["schemas"]
    return user, {leaf.path: reason for leaf, reason in errors}


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        compile_text(text)
    return str(info.value)


# --- built-in mappings ----------------------------------------------------------------------

SAMPLE_ROW = {
    "WorkerID": "1513",
    "WorkerStatus": "Active",
    "WorkerType": "Employee",
    "UserID": "EMP1513",
    "FirstName": "Ginnie",
    "LastName": "Fadiman",
    "FullName": "Ginnie Fadiman",
    "ManagerID": "1959",
    "Department": "Product Engineering",
    "Division": "Food",
    "CostCenter": "CC3035",
    "Company": "Woodgrove",
    "JobTitle": "Project Manager",
    "StreetAddress": "101 Woodgrove Way",
    "City": "Frankfurt",
    "CountryCode": "UK",
    "OfficePhone": "259-915-1098",
    "ZipCode": "79985",
    "HireDate": "2010-07-10",
}

HR_ROW = {
    "Employee ID": "E100",
    "Work Email": "Alice.Smith@Contoso.com",
    "First Name": "Alice",
    "Last Name": "Smith",
    "Preferred Name": "Ally",
    "Job Title": "Engineer",
    "Employee Type": "",
    "Employment Status": "On Leave",
    "Work Phone": "+1 555 0100",
    "Office Street": "1 Main St",
    "Office City": "Redmond",
    "Office State": "WA",
    "Office Postal Code": "98052",
    "Office Country": "us",
    "Department": "R&D",
    "Cost Center": "CC1",
    "Company": "",
    "Division": "Cloud",
    "Manager Employee ID": "E001",
    "Hire Date": "03/15/2021",
    "Termination Date": "",
    "Location": "Building 7",
}


def test_default_mapping_is_the_microsoft_sample() -> None:
    mapping = load_mapping()
    assert mapping.name == "microsoft-sample"
    assert mapping.source == "builtin:microsoft-sample"
    assert mapping.extensions == [ENTERPRISE]
    assert mapping.columns[0] == "WorkerID"
    assert set(mapping.columns) == set(SAMPLE_ROW)


def test_microsoft_sample_builds_the_expected_user() -> None:
    user, errors = build(load_mapping("microsoft-sample"), SAMPLE_ROW)
    assert errors == {}
    assert user == {
        "externalId": "1513",
        "userName": "EMP1513",
        "displayName": "Ginnie Fadiman",
        "nickName": "EMP1513",
        "userType": "Employee",
        "title": "Project Manager",
        "active": True,
        "name": {"givenName": "Ginnie", "familyName": "Fadiman"},
        "addresses": [
            {
                "streetAddress": "101 Woodgrove Way",
                "locality": "Frankfurt",
                "postalCode": "79985",
                "country": "UK",
                "type": "work",
            }
        ],
        "phoneNumbers": [{"value": "259-915-1098", "type": "work"}],
        ENTERPRISE: {
            "employeeNumber": "1513",
            "costCenter": "CC3035",
            "organization": "Woodgrove",
            "division": "Food",
            "department": "Product Engineering",
            "manager": {"value": "1959"},
        },
    }


def test_hr_suite_builds_the_expected_user() -> None:
    mapping = load_mapping("hr-suite")
    assert mapping.extensions == [ENTERPRISE, CONTOSO]
    user, errors = build(mapping, HR_ROW)
    assert errors == {}
    assert user["externalId"] == "E100"
    assert user["userName"] == "alice.smith@contoso.com"
    assert user["displayName"] == "Alice Smith"
    assert user["userType"] == "Employee"  # default for an empty column
    assert user["active"] is True  # "On Leave" maps to true
    assert user["name"] == {"givenName": "Ally", "familyName": "Smith"}  # coalesce
    assert user["emails"] == [{"value": "alice.smith@contoso.com", "primary": True, "type": "work"}]
    assert user["addresses"][0]["country"] == "US"
    assert user[ENTERPRISE]["organization"] == "Contoso"
    assert user[ENTERPRISE]["manager"] == {"value": "E001"}
    assert user[CONTOSO] == {"hireDate": "2021-03-15T00:00:00Z", "workLocation": "Building 7"}


def test_unknown_mapping_reference_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="built-in: microsoft-sample, hr-suite"):
        load_mapping(tmp_path / "nope.yaml")


# --- YAML and JSON ----------------------------------------------------------------------------

YAML_MAPPING = """\
version: 1
user:
  externalId: Id
  userName:
    column: Mail
    transforms: [trim, lower]
  displayName:
    template: "{First} {Last}"
  active:
    column: Status
    transforms:
      - map: {values: {A: true, T: false}, default: false}
  name:
    givenName: First
    familyName: Last
  emails:
    - value: Mail
      primary: {constant: true}
  urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:
    department: {column: Dept, default: General}
    manager:
      value: Boss
  urn:ietf:params:scim:schemas:extension:contoso:1.0:User:
    hireDate:
      column: Hired
      transforms:
        - date: {formats: ["%d.%m.%Y"], output: datetime}
"""

JSON_MAPPING = """\
{
  "version": 1,
  "user": {
    "externalId": "Id",
    "userName": {"column": "Mail", "transforms": ["trim", "lower"]},
    "displayName": {"template": "{First} {Last}"},
    "active": {
      "column": "Status",
      "transforms": [{"map": {"values": {"A": true, "T": false}, "default": false}}]
    },
    "name": {"givenName": "First", "familyName": "Last"},
    "emails": [{"value": "Mail", "primary": {"constant": true}}],
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
      "department": {"column": "Dept", "default": "General"},
      "manager": {"value": "Boss"}
    },
    "urn:ietf:params:scim:schemas:extension:contoso:1.0:User": {
      "hireDate": {
        "column": "Hired",
        "transforms": [{"date": {"formats": ["%d.%m.%Y"], "output": "datetime"}}]
      }
    }
  }
}
"""

ROWS = [
    {
        "Id": "7",
        "Mail": " Bob@Example.COM ",
        "First": "Bob",
        "Last": "Jones",
        "Status": "a",
        "Dept": "",
        "Boss": "3",
        "Hired": "01.02.2020",
    },
    {
        "Id": "8",
        "Mail": "",
        "First": "",
        "Last": "Lee",
        "Status": "X",
        "Dept": "Ops",
        "Boss": "",
        "Hired": "",
    },
]


def test_yaml_and_json_mappings_give_identical_users(tmp_path: Path) -> None:
    yaml_path = tmp_path / "m.yaml"
    json_path = tmp_path / "m.json"
    yaml_path.write_text(YAML_MAPPING, "utf-8")
    json_path.write_text(JSON_MAPPING, "utf-8")
    from_yaml = load_mapping(yaml_path)
    from_json = load_mapping(json_path)
    assert from_yaml.name == from_json.name == "m"
    assert from_yaml.columns == from_json.columns
    assert from_yaml.extensions == from_json.extensions == [ENTERPRISE, CONTOSO]
    for row in ROWS:
        assert build(from_yaml, row) == build(from_json, row)
    user, errors = build(from_json, ROWS[0])
    assert errors == {}
    assert user["userName"] == "bob@example.com"
    assert user[ENTERPRISE] == {"department": "General", "manager": {"value": "3"}}
    assert user[CONTOSO] == {"hireDate": "2020-02-01T00:00:00Z"}


def test_builtin_mapping_round_trips_through_json(tmp_path: Path) -> None:
    text = (
        resources.files("provisioning.convert.mappings")
        .joinpath("hr-suite.yaml")
        .read_text("utf-8")
    )
    path = tmp_path / "hr-suite.json"
    path.write_text(json.dumps(yaml.safe_load(text)), "utf-8")
    assert build(load_mapping(path), HR_ROW) == build(load_mapping("hr-suite"), HR_ROW)


# --- leaf kinds -------------------------------------------------------------------------------


def test_column_leaf_is_trimmed_and_empty_is_omitted() -> None:
    text = "user:\n  externalId: Id\n  title: T\n"
    assert build(text, {"Id": " 1 ", "T": "  Boss  "})[0] == {"externalId": "1", "title": "Boss"}
    assert build(text, {"Id": "1", "T": "   "})[0] == {"externalId": "1"}


def test_trim_false_keeps_whitespace() -> None:
    text = "trim: false\nuser:\n  externalId: Id\n  title: T\n"
    assert build(text, {"Id": "1", "T": " Boss "})[0]["title"] == " Boss "


def test_constant_leaf() -> None:
    text = "user:\n  externalId: Id\n  userType: {constant: Employee}\n  active: {constant: true}\n"
    user, errors = build(text, {"Id": "1"})
    assert errors == {}
    assert user == {"externalId": "1", "userType": "Employee", "active": True}


def test_template_leaf() -> None:
    text = 'user:\n  externalId: Id\n  displayName: {template: "{First} {Last} ({Id})"}\n'
    user, _ = build(text, {"Id": "9", "First": "Ann", "Last": "Lee"})
    assert user["displayName"] == "Ann Lee (9)"


def test_template_collapses_missing_parts() -> None:
    text = 'user:\n  externalId: Id\n  displayName: {template: "{First} {Last}"}\n'
    assert build(text, {"Id": "9", "First": "", "Last": "Lee"})[0]["displayName"] == "Lee"


def test_template_over_only_empty_columns_is_omitted() -> None:
    text = 'user:\n  externalId: Id\n  displayName: {template: "{First} - {Last}"}\n'
    user, errors = build(text, {"Id": "9", "First": " ", "Last": ""})
    assert errors == {}
    assert "displayName" not in user


def test_coalesce_takes_the_first_non_empty_column() -> None:
    text = "user:\n  externalId: Id\n  name:\n    givenName: {coalesce: [Preferred, First]}\n"
    assert build(text, {"Id": "1", "Preferred": "Ally", "First": "Alice"})[0]["name"] == {
        "givenName": "Ally"
    }
    assert build(text, {"Id": "1", "Preferred": "  ", "First": "Alice"})[0]["name"] == {
        "givenName": "Alice"
    }
    assert "name" not in build(text, {"Id": "1", "Preferred": "", "First": ""})[0]


def test_transforms_on_a_leaf() -> None:
    text = "user:\n  externalId: Id\n  userName: {column: Mail, transforms: [lower]}\n"
    assert build(text, {"Id": "1", "Mail": "A.B@C.COM"})[0]["userName"] == "a.b@c.com"


def test_leaf_default_fills_empty_values() -> None:
    text = "user:\n  externalId: Id\n  userType: {column: Type, default: Employee}\n"
    assert build(text, {"Id": "1", "Type": ""})[0]["userType"] == "Employee"
    assert build(text, {"Id": "1", "Type": "Contractor"})[0]["userType"] == "Contractor"


def test_default_applies_after_transforms() -> None:
    text = (
        "user:\n  externalId: Id\n"
        "  userType:\n    column: Type\n"
        "    transforms: [{map: {values: {E: Employee}, default: null}}]\n"
        "    default: Other\n"
    )
    assert build(text, {"Id": "1", "Type": "e"})[0]["userType"] == "Employee"
    assert build(text, {"Id": "1", "Type": "zz"})[0]["userType"] == "Other"


# --- structure --------------------------------------------------------------------------------


def test_nested_name() -> None:
    text = (
        "user:\n  externalId: Id\n  name:\n    givenName: G\n    familyName: F\n"
        "    middleName: M\n    honorificPrefix: {constant: Dr.}\n"
    )
    user, _ = build(text, {"Id": "1", "G": "Ann", "F": "Lee", "M": ""})
    assert user["name"] == {"givenName": "Ann", "familyName": "Lee", "honorificPrefix": "Dr."}


MULTI = """\
user:
  externalId: Id
  emails:
    - value: Mail
      primary: {constant: true}
  phoneNumbers:
    - value: Phone
      type: work
  addresses:
    - streetAddress: Street
      locality: City
      country: {constant: US}
"""


def test_multi_valued_entries_get_type_work() -> None:
    user, errors = build(
        MULTI, {"Id": "1", "Mail": "a@example.com", "Phone": "555", "Street": "1 Way", "City": "X"}
    )
    assert errors == {}
    assert user["emails"] == [{"value": "a@example.com", "primary": True, "type": "work"}]
    assert user["phoneNumbers"] == [{"value": "555", "type": "work"}]
    assert user["addresses"] == [
        {"streetAddress": "1 Way", "locality": "X", "country": "US", "type": "work"}
    ]


def test_multi_valued_entries_with_only_constants_are_dropped() -> None:
    user, errors = build(MULTI, {"Id": "1", "Mail": "", "Phone": "", "Street": "", "City": ""})
    assert errors == {}
    assert user == {"externalId": "1"}


def test_address_kept_when_one_column_has_data() -> None:
    user, _ = build(MULTI, {"Id": "1", "Mail": "", "Phone": "", "Street": "", "City": "Oslo"})
    assert user["addresses"] == [{"locality": "Oslo", "country": "US", "type": "work"}]


def test_multi_valued_entry_with_only_constant_sub_attributes_never_appears() -> None:
    text = "user:\n  externalId: Id\n  emails:\n    - value: {constant: x@example.com}\n"
    assert build(text, {"Id": "1"})[0] == {"externalId": "1"}


def test_enterprise_manager_value() -> None:
    text = (
        f"user:\n  externalId: Id\n  {ENTERPRISE}:\n    department: D\n"
        "    manager:\n      value: Boss\n"
    )
    user, _ = build(text, {"Id": "1", "D": "Sales", "Boss": "42"})
    assert user[ENTERPRISE] == {"department": "Sales", "manager": {"value": "42"}}
    user, _ = build(text, {"Id": "1", "D": "", "Boss": ""})
    assert ENTERPRISE not in user


def test_custom_extension_urn() -> None:
    text = (
        f"user:\n  externalId: Id\n  {CONTOSO}:\n    badge: Badge\n"
        "    onSite: {column: OnSite, type: boolean}\n"
    )
    mapping = compile_text(text)
    assert mapping.extensions == [CONTOSO]
    user, errors = build(mapping, {"Id": "1", "Badge": "B-7", "OnSite": "TRUE"})
    assert errors == {}
    assert user[CONTOSO] == {"badge": "B-7", "onSite": True}
    user, _ = build(mapping, {"Id": "1", "Badge": "", "OnSite": ""})
    assert CONTOSO not in user


# --- mapping errors, reported up front ----------------------------------------------------------


def test_unknown_core_attribute_names_the_path() -> None:
    message = spec_error("user:\n  externalId: Id\n  userNme: U\n")
    assert "user.userNme" in message
    assert "not an attribute" in message


def test_unknown_enterprise_attribute_names_the_path() -> None:
    message = spec_error(f"user:\n  externalId: Id\n  {ENTERPRISE}:\n    departmnt: D\n")
    assert f"user.{ENTERPRISE}.departmnt" in message


def test_unknown_name_sub_attribute() -> None:
    message = spec_error("user:\n  externalId: Id\n  name:\n    firstName: F\n")
    assert "user.name.firstName" in message


def test_unknown_transform_names_the_path() -> None:
    message = spec_error("user:\n  externalId: Id\n  title: {column: T, transforms: [titlecase]}\n")
    assert "user.title" in message
    assert "unknown transform 'titlecase'" in message


def test_bad_transform_options_name_the_path() -> None:
    message = spec_error(
        "user:\n  externalId: Id\n  name:\n    givenName:\n      column: G\n"
        "      transforms: [{date: 'DD/MM/YYYY'}]\n"
    )
    assert "user.name.givenName" in message
    assert "strptime" in message


def test_two_sources_on_one_leaf() -> None:
    message = spec_error("user:\n  externalId: Id\n  title: {column: T, constant: Boss}\n")
    assert "user.title" in message
    assert "exactly one of" in message
    assert "column, constant" in message


def test_no_source_on_a_leaf() -> None:
    message = spec_error("user:\n  externalId: Id\n  title: {transforms: [lower]}\n")
    assert "user.title" in message


def test_no_source_message_says_a_source_is_missing() -> None:
    # Was a bug: misleading error message for a leaf without column/constant/template/coalesce.
    message = spec_error("user:\n  externalId: Id\n  title: {transforms: [lower]}\n")
    assert "column" in message and "constant" in message


def test_unknown_leaf_option() -> None:
    message = spec_error("user:\n  externalId: Id\n  title: {column: T, colour: red}\n")
    assert "user.title" in message and "colour" in message


def test_unknown_leaf_type() -> None:
    message = spec_error("user:\n  externalId: Id\n  title: {column: T, type: datetime}\n")
    assert "user.title" in message and "type must be one of" in message


def test_external_id_must_be_mapped() -> None:
    message = spec_error("user:\n  userName: U\n")
    assert "externalId" in message


def test_non_work_type_on_emails() -> None:
    message = spec_error(
        "user:\n  externalId: Id\n  emails:\n    - value: Mail\n      type: home\n"
    )
    assert "user.emails[0].type" in message
    assert "work" in message and "home" in message


def test_non_work_type_on_later_phone_entry() -> None:
    message = spec_error(
        "user:\n  externalId: Id\n  phoneNumbers:\n    - value: P1\n    - value: P2\n"
        "      type: mobile\n"
    )
    assert "user.phoneNumbers[1].type" in message


def test_entry_mapping_nothing() -> None:
    message = spec_error("user:\n  externalId: Id\n  emails:\n    - type: work\n")
    assert "user.emails[0]" in message


@pytest.mark.parametrize(
    "template", ["{First", "{}", "{First:>10}", "{First!r}", "Name: {First} {"]
)
def test_bad_template(template: str) -> None:
    message = spec_error(f"user:\n  externalId: Id\n  displayName: {{template: '{template}'}}\n")
    assert "user.displayName" in message
    assert "template" in message


def test_version_2_is_rejected() -> None:
    message = spec_error("version: 2\nuser:\n  externalId: Id\n")
    assert "version" in message


def test_unknown_top_level_key() -> None:
    message = spec_error("user:\n  externalId: Id\nusers: {}\n")
    assert "users" in message


def test_invalid_yaml_is_a_spec_error() -> None:
    assert "not valid YAML/JSON" in spec_error("user: [\n")


def test_invalid_json_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"user": {"externalId": "Id",}', "utf-8")
    with pytest.raises(SpecError, match="broken"):
        load_mapping(path)


def test_core_attributes_under_the_core_urn_are_rejected() -> None:
    assert "directly under 'user'" in spec_error(
        f"user:\n  externalId: Id\n  {CORE}:\n    title: T\n"
    )


def test_only_name_and_manager_are_complex() -> None:
    assert "user.title" in spec_error("user:\n  externalId: Id\n  title:\n    x: {column: T}\n")
    message = spec_error(f"user:\n  externalId: Id\n  {ENTERPRISE}:\n    department:\n      x: D\n")
    assert "department" in message


def test_custom_extension_attributes_are_single_values() -> None:
    message = spec_error(f"user:\n  externalId: Id\n  {CONTOSO}:\n    office:\n      room: R\n")
    assert f"user.{CONTOSO}.office" in message


# --- header binding -----------------------------------------------------------------------------


def test_bind_lists_every_missing_column() -> None:
    mapping = load_mapping("microsoft-sample")
    header = [c for c in mapping.columns if c not in {"ManagerID", "ZipCode", "FullName"}]
    with pytest.raises(FileError) as info:
        mapping.bind(header)
    message = str(info.value)
    for column in ("ManagerID", "ZipCode", "FullName"):
        assert f"'{column}'" in message
    assert "'WorkerID'" not in message
    assert "microsoft-sample" in message


def test_bind_accepts_extra_columns_in_any_order() -> None:
    text = "user:\n  externalId: Id\n  title: T\n"
    user, _ = build(text, {"Unused": "x", "T": "Boss", "Id": "5"})
    assert user == {"externalId": "5", "title": "Boss"}


def test_bind_includes_template_and_coalesce_columns() -> None:
    text = (
        'user:\n  externalId: Id\n  displayName: {template: "{A} {B}"}\n'
        "  title: {coalesce: [C, D]}\n"
    )
    mapping = compile_text(text)
    assert mapping.columns == ["Id", "A", "B", "C", "D"]
    with pytest.raises(FileError) as info:
        mapping.bind(["Id", "A", "C"])
    assert "'B'" in str(info.value) and "'D'" in str(info.value)


# --- row-level validation -----------------------------------------------------------------------


def test_missing_external_id_is_an_error() -> None:
    user, errors = build("user:\n  externalId: Id\n  title: T\n", {"Id": "  ", "T": "x"})
    assert "externalId" not in user
    assert "missing externalId" in errors["externalId"]


def test_required_attribute_empty() -> None:
    text = "user:\n  externalId: Id\n  userName: {column: U, required: true}\n"
    _, errors = build(text, {"Id": "1", "U": ""})
    assert "userName" in errors
    assert "required" in errors["userName"]
    _, errors = build(text, {"Id": "1", "U": "u1"})
    assert errors == {}


def test_required_with_default_is_satisfied() -> None:
    text = "user:\n  externalId: Id\n  userType: {column: T, required: true, default: Employee}\n"
    user, errors = build(text, {"Id": "1", "T": ""})
    assert errors == {}
    assert user["userType"] == "Employee"


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("FALSE", False), (" True ", True)])
def test_boolean_active_accepts_true_false(raw: str, expected: bool) -> None:
    user, errors = build("user:\n  externalId: Id\n  active: A\n", {"Id": "1", "A": raw})
    assert errors == {}
    assert user["active"] is expected


@pytest.mark.parametrize("raw", ["yes", "1", "Active", "ja"])
def test_boolean_active_type_error(raw: str) -> None:
    user, errors = build("user:\n  externalId: Id\n  active: A\n", {"Id": "1", "A": raw})
    assert "active" not in user
    assert "true or false" in errors["active"]
    assert raw not in errors["active"]


def test_map_error_reported_on_the_attribute() -> None:
    user, errors = build(
        load_mapping("microsoft-sample"), {**SAMPLE_ROW, "WorkerStatus": "Retired"}
    )
    assert "active" not in user
    assert "Retired" not in errors["active"]


def test_display_name_max_length() -> None:
    text = "user:\n  externalId: Id\n  displayName: D\n"
    user, errors = build(text, {"Id": "1", "D": "x" * 256})
    assert errors == {}
    assert len(user["displayName"]) == 256
    user, errors = build(text, {"Id": "1", "D": "x" * 257})
    assert "displayName" not in user
    assert "257" in errors["displayName"] and "256" in errors["displayName"]


def test_max_length_override() -> None:
    text = "user:\n  externalId: Id\n  title: {column: T, max_length: 5}\n"
    assert build(text, {"Id": "1", "T": "12345"})[1] == {}
    assert "at most 5" in build(text, {"Id": "1", "T": "123456"})[1]["title"]


def test_enterprise_max_length_applies() -> None:
    text = f"user:\n  externalId: Id\n  {ENTERPRISE}:\n    department: D\n"
    _, errors = build(text, {"Id": "1", "D": "d" * 65})
    assert f"{ENTERPRISE}:department" in errors


def test_external_id_max_length() -> None:
    _, errors = build("user:\n  externalId: Id\n", {"Id": "9" * 65})
    assert "externalId" in errors


def test_external_id_longer_than_employee_id_is_rejected() -> None:
    # A 17-character externalId would pass here and then fail in Entra.
    _, errors = build("user:\n  externalId: Id\n", {"Id": "E" * 17})
    assert "externalId" in errors


EMAIL = "user:\n  externalId: Id\n  emails:\n    - value: Mail\n"


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "alice.smith+hr@example.com",
        "o'brien@example.co.uk",
        "first.last@mail.sub.example.org",
        "user@xn--bcher-kva.de",
        "user@bücher.de",  # IDN domain: not the fast path, accepted by email-validator
        "jörg@example.de",  # internationalised local part
    ],
)
def test_valid_emails_accepted(address: str) -> None:
    user, errors = build(EMAIL, {"Id": "1", "Mail": address})
    assert errors == {}
    assert user["emails"] == [{"value": address, "type": "work"}]


@pytest.mark.parametrize(
    "address",
    [
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@@example.com",
        "alice smith@example.com",
        "alice..smith@example.com",
        "alice@-example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_invalid_emails_rejected(address: str) -> None:
    user, errors = build(EMAIL, {"Id": "1", "Mail": address})
    assert "emails" not in user
    reason = errors["emails.value"]
    assert "email" in reason or "too long" in reason
    assert address not in reason


def test_email_local_part_longer_than_64_rejected() -> None:
    # Was a bug: RFC 5321 limits the local part to 64 octets; the fast path accepts 65.
    _, errors = build(EMAIL, {"Id": "1", "Mail": "a" * 65 + "@example.com"})
    assert "emails.value" in errors


def test_yaml_yes_no_map_keys_match_hr_text() -> None:
    # Was a bug: a natural-looking mapping `map: {Yes: true, No: false}` rejects every 'Yes' row.
    text = (
        "user:\n  externalId: Id\n  active:\n    column: A\n"
        "    transforms:\n      - map: {Yes: true, No: false}\n"
    )
    user, errors = build(text, {"Id": "1", "A": "Yes"})
    assert errors == {}
    assert user["active"] is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("just text", "the mapping must be an object"),
        ("version: 1\nuser:\n  externalId: {column: WorkerID, bogus: 1}\n", "bogus is not a known"),
        ("version: 2\nuser:\n  externalId: WorkerID\n", "only mapping version 1 exists"),
        ("version: 1\n", "user is required"),
        (
            "version: 1\nuser:\n  externalId: WorkerID\n"
            "  displayName: {column: FullName, type: weird}\n",
            "type must be one of",
        ),
        (
            "version: 1\nuser:\n  externalId: WorkerID\n"
            "  displayName: {column: FullName, transforms: [{upper: true, lower: true}]}\n",
            "not an object with the keys 'lower', 'upper'",
        ),
    ],
)
def test_mapping_errors_are_words_for_a_person(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_mapping(text, name="m", source="test")
    message = str(info.value)
    assert fragment in message
    for raw in ("Input should", "Extra inputs", "Field required", "Value error", "MappingFile"):
        assert raw not in message
    assert not any(c in message for c in "{}[]")
