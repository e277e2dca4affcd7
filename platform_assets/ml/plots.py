"""Plots where people look: PNG images for MLflow artifacts and for Dagster metadata (markdown with the image
embedded). matplotlib's object API with the Agg canvas: no display, no global pyplot state."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from platform_assets.checks.stability import PSI_MODERATE, PSI_SIGNIFICANT
from platform_assets.ml.drift import DayDrift

if TYPE_CHECKING:  # imported where used: loading the code location must not import numpy
    import numpy as np


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # noqa: PLC0415  (slow import, only plotting steps need it)

    return Figure(figsize=(width, height), dpi=80, layout="constrained")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def evaluation_png(labels: np.ndarray, scores: dict[str, np.ndarray]) -> bytes:
    """ROC, precision-recall and calibration curves of each named model on the same holdout."""
    from sklearn.calibration import calibration_curve  # noqa: PLC0415
    from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: PLC0415

    figure = _figure(12, 3.8)
    roc, precision_recall, calibration = figure.subplots(1, 3)
    for name, values in scores.items():
        false_positive, true_positive, _ = roc_curve(labels, values)
        roc.plot(false_positive, true_positive, label=name)
        precision, recall, _ = precision_recall_curve(labels, values)
        precision_recall.plot(recall, precision, label=name)
        observed, predicted = calibration_curve(labels, values, n_bins=10, strategy="quantile")
        calibration.plot(predicted, observed, marker="o", label=name)
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    precision_recall.axhline(labels.mean(), color="grey", linestyle=":", label="positive rate")
    calibration.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for axes, title, x, y in [(roc, "ROC", "false positive rate", "true positive rate"),
                              (precision_recall, "Precision-recall", "recall", "precision"),
                              (calibration, "Calibration (deciles)", "mean predicted probability",
                               "observed share delayed")]:
        axes.set(title=title, xlabel=x, ylabel=y)
        axes.legend(fontsize="small")
    return _png(figure)


def drift_png(days: list[DayDrift]) -> bytes:
    """Left: PSI of each feature on the last judged day (or the last day), with the 0.1 and 0.25 bands.
    Right: per day, the number of drifted features and the prediction PSI."""
    import numpy as np  # noqa: PLC0415

    latest = next((drift for drift in reversed(days) if drift.judged), days[-1])
    figure = _figure(12, 4.2)
    features, daily = figure.subplots(1, 2, width_ratios=[1, 1.3])
    ranked = sorted(latest.feature_psi.items(), key=lambda item: np.nan_to_num(item[1]))
    values = [np.nan_to_num(psi) for _, psi in ranked]
    colors = ["tab:red" if v >= PSI_SIGNIFICANT else "tab:orange" if v >= PSI_MODERATE else "tab:green" for v in values]
    features.barh([name for name, _ in ranked], values, color=colors)
    features.set_xscale("symlog", linthresh=0.1)
    for band in (PSI_MODERATE, PSI_SIGNIFICANT):
        features.axvline(band, color="grey", linestyle=":")
    features.set(title=f"Feature PSI, window ending {latest.day}", xlabel="PSI (symlog)")
    features.tick_params(axis="y", labelsize="small")
    dates = [drift.day for drift in days]
    daily.bar(dates, [len(drift.drifted_features) for drift in days], label="features with PSI >= 0.25 (grey: "
              "window too short to judge)", color=["tab:blue" if drift.judged else "lightgrey" for drift in days])
    daily.set_ylabel("features drifted")
    scores = daily.twinx()
    scores.plot(dates, [drift.prediction_psi for drift in days], color="tab:red", marker=".", label="prediction PSI")
    scores.axhline(PSI_SIGNIFICANT, color="tab:red", linestyle=":")
    scores.set_ylabel("prediction PSI")
    daily.set_title("Per day, each on the window ending on it")
    daily.tick_params(axis="x", labelrotation=45, labelsize="small")
    figure.legend(loc="outside lower center", ncols=2, fontsize="small")
    return _png(figure)
