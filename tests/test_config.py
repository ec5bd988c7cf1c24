from __future__ import annotations

import json
from pathlib import Path

import pytest

from crmlab.config import PIPELINES, SECTIONS, CrmlabConfig, config_hash, load_config
from crmlab.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_shipped_config_file_validates():
    files = sorted(REPO_CONFIGS.glob("*.yaml"))
    assert {f.stem for f in files} >= set(SECTIONS)
    cfg = load_config(REPO_CONFIGS)
    # the files really are read: clv.yaml and churn.yaml derive their windows from the data
    assert (cfg.clv.calibration_end, cfg.churn.horizon_days) == ("auto", "auto")
    assert cfg.kpis.period == "M" and cfg.kpis.funnel_stages[-1] == "won"  # kpis.yaml is read too
    for pipeline in SECTIONS[1:]:
        section = cfg.section(pipeline)
        assert set(section) == {"project", pipeline}


def test_yaml_overrides_defaults_and_set_overrides_yaml(tmp_path):
    (tmp_path / "clv.yaml").write_text("penalizer: 0.5\nhorizon_months: 6\n")
    cfg = load_config(tmp_path, ["clv.penalizer=0.01", "project.as_of=1997-09-30", "project.features.windows=[7, 30]"])
    assert cfg.clv.penalizer == 0.01  # --set beats YAML
    assert cfg.clv.horizon_months == 6  # YAML beats default
    assert cfg.clv.margin == 1.0  # default kept
    assert str(cfg.project.as_of) == "1997-09-30"
    assert cfg.project.features.windows == [7, 30]


def test_misspelt_key_in_yaml_names_file_and_key(tmp_path):
    (tmp_path / "clv.yaml").write_text("penaliser: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    msg = str(err.value)
    assert "clv.yaml" in msg and "clv.penaliser" in msg and "did you mean 'penalizer'" in msg


def test_misspelt_nested_key_on_command_line(tmp_path):
    with pytest.raises(ConfigError, match=r"project\.tracking\.urii.*did you mean 'uri'"):
        load_config(tmp_path, ["project.tracking.urii=sqlite:///x.db"])


def test_bad_value_names_key_and_value(tmp_path):
    (tmp_path / "project.yaml").write_text("time_unit: Y\n")
    with pytest.raises(ConfigError, match=r"project\.yaml: project\.time_unit: .*'Y'"):
        load_config(tmp_path)


@pytest.mark.parametrize("bad", ["noequals", "nosection.x=1", "=3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, [bad])


def test_invalid_yaml_is_reported_with_file(tmp_path):
    (tmp_path / "churn.yaml").write_text("horizon_days: [1, 2\n")
    with pytest.raises(ConfigError, match="churn.yaml: not valid YAML"):
        load_config(tmp_path)


def test_config_is_frozen_and_hash_stable():
    a, b = load_config(None), load_config(None)
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config(None, ["clv.margin=0.5"]))
    with pytest.raises(Exception):
        a.project.seed = 3  # type: ignore[misc]


def test_schema_is_json_and_covers_every_section():
    schema = CrmlabConfig.model_json_schema()
    json.dumps(schema)
    assert set(schema["properties"]) == set(SECTIONS) >= {"project", *PIPELINES}


def test_kpis_section_rejects_a_bad_funnel_and_names_the_key(tmp_path):
    (tmp_path / "kpis.yaml").write_text("funnel_stages: [lead, lead]\n")
    with pytest.raises(ConfigError, match=r"kpis\.yaml: kpis\.funnel_stages: .*distinct"):
        load_config(tmp_path)
    (tmp_path / "kpis.yaml").write_text("periode: W\n")
    with pytest.raises(ConfigError, match=r"kpis\.periode.*did you mean 'period'"):
        load_config(tmp_path)


def test_impossible_date_names_file_key_and_value(tmp_path):
    (tmp_path / "project.yaml").write_text("as_of: 2024-13-01\n")
    with pytest.raises(ConfigError, match=r"project\.yaml: project\.as_of: .*'2024-13-01'"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"--set: clv\.calibration_end: .*'2023-02-30'"):
        load_config(None, ["clv.calibration_end=2023-02-30"])


def test_a_date_shaped_text_stays_text_where_text_is_wanted(tmp_path):
    cfg = load_config(None, ["project.name=2024-13-01", "project.as_of=2024-02-29"])
    assert cfg.project.name == "2024-13-01" and str(cfg.project.as_of) == "2024-02-29"


@pytest.mark.parametrize(("content", "expected"), [
    ("as_of: caf\u00e9\n".encode("latin-1"), r"project\.yaml: not UTF-8 text \(byte 0xe9 at offset 10\)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"project\.yaml: not UTF-8"),
    (b"as_of: 2024-01-01\n\x00\x00", r"project\.yaml: a binary file"),
    (b"as_of: [2024\n", r"project\.yaml: not valid YAML: .* at line 2, column 1"),
    (b"x: !!python/object/apply:os.system [true]\n", r"project\.yaml: not valid YAML: could not determine a constructor"),
    (b"x: !!int ten\n", r"project\.yaml: not valid YAML"),
])
def test_unreadable_config_file_is_one_config_error_naming_it(tmp_path, content, expected):
    (tmp_path / "project.yaml").write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(tmp_path)
    assert "\n" not in str(err.value)


def test_utf8_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "project.yaml").write_bytes("\ufeffname: caf\u00e9\n".encode())
    assert load_config(tmp_path).project.name == "caf\u00e9"


def test_missing_config_dir_is_defaults_unless_it_must_exist(tmp_path):
    (tmp_path / "configs").mkdir()
    assert load_config(tmp_path / "confgs").clv.penalizer == 0.0  # the library call keeps defaults
    with pytest.raises(ConfigError, match=r"'.*confgs' does not exist \(did you mean '.*configs'\?\)"):
        load_config(tmp_path / "confgs", must_exist=True)
    with pytest.raises(ConfigError, match=r"'.*zzz' does not exist; give a folder"):
        load_config(tmp_path / "zzz", must_exist=True)
    assert load_config(tmp_path / "configs", must_exist=True).clv.margin == 1.0  # empty: defaults


def test_yml_is_read_and_a_near_miss_file_name_is_an_error(tmp_path):
    (tmp_path / "clv.yml").write_text("penalizer: 0.3\n")
    assert load_config(tmp_path).clv.penalizer == 0.3
    (tmp_path / "clv.yaml").write_text("penalizer: 0.4\n")
    with pytest.raises(ConfigError, match="two files for section 'clv'"):
        load_config(tmp_path)
    (tmp_path / "clv.yml").unlink()
    (tmp_path / "segmentaton.yaml").write_text("k: 3\n")
    with pytest.raises(ConfigError, match=r"segmentaton\.yaml: not a config section.*did you mean segmentation\.yaml"):
        load_config(tmp_path)
    (tmp_path / "segmentaton.yaml").rename(tmp_path / "notes.yaml")  # unrelated YAML beside the configs is fine
    assert load_config(tmp_path).clv.penalizer == 0.4


def test_set_of_a_misspelt_section_suggests_it():
    with pytest.raises(ConfigError, match=r"--set 'chrun\.horizon_days=3'.*did you mean 'churn'"):
        load_config(None, ["chrun.horizon_days=3"])


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    (tmp_path / "project.yaml").write_text("as_of: 2024-01-01\ntracking:\n  uri: a\n  uri: b\n")
    with pytest.raises(ConfigError, match=r"project\.yaml: not valid YAML: the key 'uri' is given twice \(lines 3 and 4\)"):
        load_config(tmp_path)
    # a merge key's values may be overridden: that is what merging is for
    (tmp_path / "project.yaml").write_text("tracking:\n  <<: {uri: 'sqlite:///a.db', experiment: e}\n"
                                           "  uri: 'sqlite:///b.db'\n")
    cfg = load_config(tmp_path)
    assert cfg.project.tracking.uri == "sqlite:///b.db" and cfg.project.tracking.experiment == "e"


@pytest.mark.parametrize(("key", "value", "says"), [
    ("churn.lightgbm", "{num_leafs: 3}", "'num_leafs' is not a LightGBM parameter (did you mean 'num_leaves'?)"),
    ("forecast.lightgbm", "{learnin_rate: 0.1}", "'learnin_rate' is not a LightGBM parameter (did you mean "
     "'learning_rate'?)"),
])
def test_a_misspelt_lightgbm_key_is_refused(key, value, says):
    """issue 16 item 4: `--set churn.lightgbm={num_leafs: 3}` was accepted and trained 31 leaves."""
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}={value}"])
    assert says in str(err.value)


def test_lightgbm_names_aliases_and_crmlab_arguments_are_accepted():
    cfg = load_config(None, ["churn.lightgbm={num_leaves: 5, max_leaf: 5, n_estimators: 50, early_stopping_rounds: 5, "
                             "colsample_bytree: 0.8}", "forecast.lightgbm={num_boost_round: 50, min_data_in_leaf: 3}"])
    assert cfg.churn.lightgbm["n_estimators"] == 50 and cfg.forecast.lightgbm["num_boost_round"] == 50
