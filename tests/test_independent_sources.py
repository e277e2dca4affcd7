"""One source missing on a day holds back only what reads it: the other sources of the day publish and the
models that read only them are built, in the same headless materialization of the whole graph."""

import datetime as dt

import dagster as dg

from deliveries import DEMO_RAW_KEYS
from platform_assets.sources.landing import manifest_path

DEMO = {key.to_user_string() for key in DEMO_RAW_KEYS}

FIRST, LAST = dt.date(2013, 2, 1), dt.date(2013, 2, 2)


def test_a_missing_source_holds_back_only_its_readers(data_dir, monkeypatch):
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRIES", "0")
    from platform_assets.demo import deliver, layer_row_counts
    from platform_assets.instance import prepare_instance
    from platform_assets.runner import materialize_range
    from platform_assets.settings import load_settings

    settings = load_settings()
    prepare_instance(settings)
    deliver(settings, FIRST, LAST)
    manifest_path(settings.landing_dir, "weather", LAST).unlink()  # the weather feed is late on the second day

    with dg.DagsterInstance.get() as instance:
        run = materialize_range(instance, FIRST, LAST, show_progress=False)
        first, rest = run.results
        assert not first.success and rest.success, "the raw run fails for weather; the rest runs and succeeds"
        assert {key for key in run.unpublished if key in DEMO} == {"raw/weather"}
        assert "manifest_2013-02-02.json: not delivered yet" in run.unpublished["raw/weather"]
        held_back = set(run.held_back["raw/weather"])
        assert {"staging/stg_weather__observations", "marts/flight_features", "ml/delay_model",
                "ml/flight_delay_predictions"} <= held_back
        assert not held_back & {"marts/flights", "marts/bookings", "staging/stg_flights__flights"}

        published = {e.asset_key.to_user_string() for result in run.results
                     for e in result.get_asset_materialization_events()}
        assert {"raw/flights", "raw/bookings", "raw/planes", "marts/flights", "marts/bookings",
                "marts/bookings_quarantine", "intermediate/int_route_daily_delays"} <= published
        assert not published & held_back and "raw/weather" not in published
        checks = [e for e in rest.get_asset_check_evaluations() if e.severity == dg.AssetCheckSeverity.ERROR]
        assert checks and all(e.passed for e in checks), "the readers of the published sources pass their gates"

    counts = layer_row_counts(settings)
    assert counts["marts"]["flights"] > 0 and counts["marts"]["bookings"] > 0
    assert "flight_features" not in counts["marts"], "nothing that reads the weather was published"
