"""Population stability index (PSI): how far a sample's distribution has moved from a reference. Pure numpy.

A reference is kept as bins with their shares, so it can be stored (with a model, say) and compared with new
samples later without the reference rows. The usual bands: below 0.1 stable, 0.1 to 0.25 moderate, 0.25 and
above significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and pandas are imported where used: loading the code location must not import them
    import numpy as np

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
PSI_BINS = 10
_SHARE_FLOOR = 1e-4  # an empty bin counts as this share, so the logarithm stays finite


@dataclass(frozen=True)
class ReferenceBins:
    """A reference distribution with the share of each bin. Numeric with many distinct values: bins split at
    `cuts` (quantiles of the reference), the outer bins open-ended. Few distinct values, or text: one bin per
    reference value in `values`, plus a last bin (share 0) for values the reference never had."""

    shares: tuple[float, ...]
    cuts: tuple[float, ...] = ()
    values: tuple = ()

    def bin_of(self, sample: np.ndarray) -> np.ndarray:
        import numpy as np  # noqa: PLC0415
        import pandas as pd  # noqa: PLC0415

        if self.values:
            position = pd.Series(range(len(self.values)), index=list(self.values))
            return pd.Series(sample).map(position).fillna(len(self.values)).to_numpy(dtype=int)
        return np.searchsorted(np.asarray(self.cuts, dtype=float), sample.astype(float), side="right")

    def to_dict(self) -> dict:
        return {"shares": list(self.shares), "cuts": list(self.cuts), "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: dict) -> ReferenceBins:
        return cls(shares=tuple(data["shares"]), cuts=tuple(data.get("cuts", ())), values=tuple(data.get("values", ())))


def _present(sample) -> np.ndarray:
    """The non-null values of a sample (NaN, None and pandas NA are all nulls): floats, or text."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    if isinstance(sample, np.ndarray) and sample.dtype.kind in "fiub":  # numeric already: no pandas needed
        values = sample.astype(float, copy=False)
        return values[~np.isnan(values)]
    series = pd.Series(sample).dropna()
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float)
    return series.astype(str).to_numpy(dtype=str)


def reference_bins(reference, bins: int = PSI_BINS) -> ReferenceBins:
    """Bins of the reference's non-null values: quantile cuts, or one bin per value when there are at most
    `bins` distinct values (a constant, a flag, a category)."""
    import numpy as np  # noqa: PLC0415

    values = _present(reference)
    if values.dtype.kind in "US":
        distinct = np.unique(values)
        counts = np.array([(values == value).sum() for value in distinct], dtype=float)
        shares = np.append(counts / max(len(values), 1), 0.0)
        return ReferenceBins(shares=tuple(shares.tolist()), values=tuple(distinct.tolist()))
    # Numbers: sorted once, then the distinct values, the quantiles and each bin's count all read the sorted array
    # (the feature distribution check bins 9 features for each of a run's days).
    values = np.sort(values)
    first = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.array([], dtype=int)
    if len(first) <= bins:  # one bin per value
        counts = np.diff(np.append(first, len(values)))
        shares = np.append(counts / max(len(values), 1), 0.0)
        return ReferenceBins(shares=tuple(shares.tolist()), values=tuple(values[first].tolist()))
    cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))[1:-1]
    # Bin k holds the values v with k cuts at or below v: the values below cut k fill bins 0..k.
    counts = np.diff(np.concatenate(([0], np.searchsorted(values, cuts, side="left"), [len(values)])))
    return ReferenceBins(shares=tuple((counts / len(values)).tolist()), cuts=tuple(cuts.tolist()))


def stability_index(reference: ReferenceBins, current) -> float:
    """PSI of the current sample's non-null values against the reference bins; NaN when there are none."""
    import numpy as np  # noqa: PLC0415

    values = _present(current)
    if len(values) == 0 or not sum(reference.shares):
        return float("nan")
    actual = np.bincount(reference.bin_of(values), minlength=len(reference.shares)) / len(values)
    expected = np.clip(np.asarray(reference.shares, dtype=float), _SHARE_FLOOR, None)
    actual = np.clip(actual, _SHARE_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def population_stability_index(reference, current, bins: int = PSI_BINS) -> float:
    """PSI of `current` against `reference` (nulls left out of both)."""
    return stability_index(reference_bins(reference, bins), current)


def psi_band(value: float) -> str:
    if value != value:
        return "no data"
    if value >= PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if value >= PSI_MODERATE else "stable"
