"""The configuration a box runs on: every mistake is caught with its path, line and a way out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from harness import ROOT

from gateway import config
from gateway.cli.main import main
from gateway.errors import ConfigError

EXAMPLE = ROOT / "config" / "gateway.yaml"

MINIMAL = """\
gateway: {id: box-01}
course:
  gates: [{id: SF}, {id: G1}]
riders:
  - {id: r01, name: Anna}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(textwrap.dedent(text), "test.yaml")
    return info.value.lines()


def test_example_and_embedded_defaults_validate() -> None:
    example = config.load(EXAMPLE)
    assert example.gateway_id == "box-01"
    defaults = config.load(None)
    assert defaults.source == config.EMBEDDED
    assert defaults.state_dir == Path("./var")
    assert defaults.settings.kafka.enabled is False
    assert defaults.settings.web.port == 8080


def test_example_carries_the_three_seed_views_with_auto_scales() -> None:
    views = config.load(EXAMPLE).settings.web.chart["views"]
    assert [v["name"] for v in views] == [
        "Power vs. Time (Z-Score)",
        "Power vs. Time (Modified Z-Score)",
        "Watts per Kilo vs. Absolute Time",
    ]
    assert views[0]["xScale"] == {"min": None, "max": None}
    assert (views[2]["xAxis"]["data"], views[2]["yAxis"]["data"]) == ("time_absolute", "watts_per_kilo")


def test_defaults_come_from_the_schema() -> None:
    cfg = config.parse(MINIMAL)
    s = cfg.settings
    assert s.spool.synchronous == "NORMAL"
    assert s.spool.full_policy == "reject"
    assert s.kafka.topics == {"power": "power", "crossings": "crossings", "segments": "segments",
                              "sessions": "sessions"}
    assert s.riders[0].power_meters == ()
    assert s.replay.simulation_factor == 1.0
    assert s.web.chart["quadrants"]["efficient"]["label"] == "Efficient"
    assert s.spool_path == Path("/var/lib/trackside-gateway/spool.sqlite")


def test_wrong_type_names_path_line_expected_and_found() -> None:
    text = MINIMAL + textwrap.dedent("""\
        web:
          chart:
            views:
              - {id: a, name: A, xAxis: {data: time_zscore, label: x}, yAxis: {data: power_zscore, label: y}}
              - {id: b, name: B, xAxis: {data: time_zscore, label: x}, yAxis: {data: power_zscore, label: y}}
              - id: c
                name: C
                xAxis: {data: time_zscore, label: x}
                yAxis: {data: power_zscore, label: y}
                xScale: {min: abc}
        """)
    assert problems_of(text) == [
        "test.yaml:15: web.chart.views[2].xScale.min: expected a number or null, got 'abc'"
    ]


def test_missing_required_key() -> None:
    lines = problems_of("gateway: {id: box-01}\ncourse:\n  gates: [{id: SF}]\nriders:\n  - {id: r01}\n")
    assert lines == ["test.yaml:5: riders[0].name: required key is missing"]


def test_missing_section() -> None:
    assert problems_of("gateway: {id: box-01}\nriders: []\n") == ["test.yaml: course: required key is missing"]


def test_unknown_key_is_an_error_with_a_suggestion() -> None:
    lines = problems_of(MINIMAL + "spool:\n  retension_h: 12\n")
    assert len(lines) == 1
    assert lines[0].startswith("test.yaml:7: spool.retension_h: unknown key (did you mean 'retention_h'?")


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = MINIMAL + "kafka:\n  enabled: yes-please\n  topics: {power: 'bad topic'}\nweb: {port: 70000}\n"
    lines = problems_of(text)
    assert lines == [
        "test.yaml:7: kafka.enabled: expected true or false, got 'yes-please'",
        "test.yaml:8: kafka.topics.power: expected text matching ^[A-Za-z0-9._-]{1,249}$, got 'bad topic'",
        "test.yaml:9: web.port: expected a number <= 65535, got 70000",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gateway:\n  id: x\n course: 1\n", "test.yaml:3:2: invalid YAML: expected <block end>"),
        ("gateway: {id: [x}\n", "test.yaml:1:17: invalid YAML: expected ',' or ']'"),
        ("gateway:\n  id: x\n  id: y\n", "test.yaml:3:3: invalid YAML: found the key 'id' twice (first on line 2)"),
        ("", "test.yaml: the file is empty"),
        # An editor's tab: the line and what to do about it.
        ("gateway:\n\tid: x\n", "test.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token "
                                  "(indent with spaces: YAML takes no tabs there)"),
    ],
)
def test_broken_yaml_reports_line_and_column(text: str, expected: str) -> None:
    lines = problems_of(text)
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines[0]


def test_cross_references_and_duplicates() -> None:
    text = """\
        gateway: {id: box-01}
        course:
          gates: [{id: SF}, {id: G1}, {id: SF}]
          segments: [{name: Climb}]
        riders:
          - {id: r01, name: Anna, transponder: BD-1, power_meters: [{ant: 7}]}
          - {id: r01, name: Lea, transponder: BD-1, power_meters: [{ant: 7}, {ant: 8, ble: x}]}
        web:
          view_sets: {u23: [zscor]}
        """
    lines = problems_of(text)
    assert "test.yaml:7: riders[1].power_meters[1]: expected exactly one of 'ant', 'ble'" in lines
    fixed = textwrap.dedent(text).replace(", ble: x", "")
    with pytest.raises(ConfigError) as info:
        config.parse(fixed, "test.yaml")
    assert info.value.lines() == [
        "test.yaml:3: course.gates[2].id: duplicate gate id 'SF' (already used at course.gates[0].id)",
        "test.yaml:4: course.segments: expected 3 segments for 3 gates (segment k runs from gate k-1 to "
        "gate k, the last back to the start), got 1",
        "test.yaml:7: riders[1].id: duplicate rider id 'r01' (already used at riders[0].id)",
        "test.yaml:7: riders[1].power_meters[0]: duplicate power meter ('ant', 7) (already used at "
        "riders[0].power_meters[0])",
        "test.yaml:7: riders[1].transponder: duplicate transponder 'BD-1' (already used at riders[0].transponder)",
        # The seed's views are there without being written (#28, point 1): the near one is named.
        "test.yaml:9: web.view_sets.u23[0]: no view with id 'zscor' in web.chart.views (did you mean 'zscore'?)",
    ]


def test_admin_token_never_reaches_the_page() -> None:
    from gateway.web.site import public_config

    public = public_config(config.load(EXAMPLE))
    assert "admin_token" not in yaml.safe_dump(public)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == "OK\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "web: {port: eighty}\n")
    assert main(["check-config", str(bad)]) == 2
    assert capsys.readouterr().out == f"{bad}:6: web.port: expected a whole number, got 'eighty'\n"
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().out == f"{tmp_path / 'missing.yaml'}: the file does not exist\n"
