import numpy as np

from platform_assets.checks.distribution import population_stability_index


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.normal(50, 10, 20_000)
    assert population_stability_index(reference, rng.normal(50, 10, 5_000)) < 0.02
    assert population_stability_index(reference, rng.normal(65, 10, 5_000)) > 0.25


def test_psi_ignores_nulls_and_constant_references():
    values = np.array([1.0, 2.0, np.nan, 3.0] * 100)
    assert population_stability_index(values, values) < 1e-9
    assert population_stability_index(np.ones(100), np.full(50, 7.0)) == 0.0


def test_schema_differences_name_removed_added_and_retyped_columns():
    from platform_assets.checks.schema_change import schema_differences

    assert schema_differences({"a": "INTEGER", "b": "VARCHAR", "c": "DATE"},
                              {"a": "BIGINT", "c": "DATE", "d": "DOUBLE"}) == [
        "removed b (VARCHAR)", "added d (DOUBLE)", "a: INTEGER -> BIGINT"]
    assert schema_differences({"a": "INTEGER"}, {"a": "INTEGER"}) == []
