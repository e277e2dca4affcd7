import numpy as np

from platform_assets.checks.stability import ReferenceBins, population_stability_index, psi_band, reference_bins


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.normal(50, 10, 20_000)
    assert population_stability_index(reference, rng.normal(50, 10, 5_000)) < 0.02
    assert population_stability_index(reference, rng.normal(65, 10, 5_000)) > 0.25


def test_psi_ignores_nulls_and_bins_few_distinct_values_one_per_value():
    values = np.array([1.0, 2.0, np.nan, 3.0] * 100)
    assert population_stability_index(values, values) < 1e-9
    # A constant reference is one bin: the same constant is stable, any other value is a shift either way.
    assert population_stability_index(np.ones(100), np.ones(30)) < 1e-9
    assert population_stability_index(np.ones(100), np.full(50, 7.0)) > 0.25
    assert population_stability_index(np.ones(100), np.full(50, -7.0)) > 0.25
    assert np.isnan(population_stability_index(np.ones(100), np.array([np.nan])))


def test_psi_of_categories_counts_values_the_reference_never_had():
    reference = np.array(["UA", "B6", "EV", None] * 50, dtype=object)
    assert population_stability_index(reference, np.array(["EV", "UA", "B6"] * 10, dtype=object)) < 1e-9
    assert population_stability_index(reference, np.array(["UA", "WN", "WN"] * 10, dtype=object)) > 0.25


def test_reference_bins_survive_a_round_trip_and_name_their_band():
    bins = reference_bins(np.random.default_rng(2).normal(0, 1, 1_000))
    assert len(bins.cuts) == 9 and abs(sum(bins.shares) - 1) < 1e-9
    assert ReferenceBins.from_dict(bins.to_dict()) == bins
    assert [psi_band(v) for v in (0.05, 0.1, 0.3, float("nan"))] == ["stable", "moderate", "significant", "no data"]


def test_reference_bins_are_the_quantile_bins_of_the_values():
    """Each bin holds the reference values between its cuts (quantiles of the values), whatever the ties, nulls
    and integer types; few distinct values get a bin each."""
    rng = np.random.default_rng(3)
    for values in (rng.normal(0, 1, 5_000), np.round(rng.normal(0, 3, 5_000)), rng.integers(0, 40, 3_000),
                   np.where(rng.random(2_000) < 0.1, np.nan, rng.gamma(2, 2, 2_000))):
        present = values[~np.isnan(values)] if values.dtype.kind == "f" else values.astype(float)
        bins = reference_bins(values)
        cuts = np.unique(np.quantile(present, np.linspace(0, 1, 11)))[1:-1]
        assert bins.cuts == tuple(cuts.tolist()) and not bins.values
        expected = np.bincount(np.searchsorted(cuts, present, side="right"), minlength=len(cuts) + 1)
        assert bins.shares == tuple((expected / len(present)).tolist())
    few = reference_bins(np.array([3, 1, 3, 3, 2, 1]))
    assert few.values == (1.0, 2.0, 3.0) and few.shares == (2 / 6, 1 / 6, 3 / 6, 0.0) and not few.cuts
    assert reference_bins(np.array([], dtype=float)) == ReferenceBins(shares=(0.0,))


def test_schema_differences_name_removed_added_and_retyped_columns():
    from platform_assets.checks.schema_change import schema_differences

    assert schema_differences({"a": "INTEGER", "b": "VARCHAR", "c": "DATE"},
                              {"a": "BIGINT", "c": "DATE", "d": "DOUBLE"}) == [
        "removed b (VARCHAR)", "added d (DOUBLE)", "a: INTEGER -> BIGINT"]
    assert schema_differences({"a": "INTEGER"}, {"a": "INTEGER"}) == []
