"""Features of a window measured against the baseline it was trained on.

An isolation forest trained on the province's normal weeks only ever splits on what varied in
them: a log template never seen in training, or a count that is always 3 and suddenly 0, is
constant in the training data and invisible to the trees. :class:`BaselineDeviation` learns,
per input feature, its usual range in the baseline (``low_quantile`` to ``high_quantile``) and
how often it is non-zero, and gives the forest what differs from the baseline:

- per feature, how far the value lies outside its usual range, in units of that range
  (0 inside it): ``failed logons 45, usual 0–2`` is a deviation of (45 - 2) / 2;
- the total of those deviations and how many features are outside their range;
- the mass of features rare in the baseline (non-zero in under ``rare_presence`` of its windows:
  a template hardly ever seen), log-scaled;
- how many features that are nearly always present (``common_presence``) are missing.

The same learned ranges explain a score in words (:meth:`BaselineDeviation.explain`). It is a
scikit-learn transformer (``fit``/``transform``, ``get_feature_names_out``) and passes the
library's common estimator checks (``tests/unit/detectors/test_anomaly_features.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

AGGREGATES = ("deviation.total", "deviation.features", "novel.mass", "usual.missing")


class BaselineDeviation(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Deviation of each feature from its baseline range, and baseline novelty (see module).

    Parameters: ``low_quantile``/``high_quantile`` bound the usual range; ``min_span`` is the
    smallest range a deviation is measured in (1.0: counts); ``rare_presence`` and
    ``common_presence`` say which features are rare or nearly always there.

    Fitted: ``low_``, ``high_``, ``span_``, ``presence_`` (share of training rows where the
    feature is non-zero), ``rare_``/``common_`` (masks), ``n_features_in_`` and, for named
    input, ``feature_names_in_``.
    """

    def __init__(
        self,
        low_quantile: float = 0.005,
        high_quantile: float = 0.995,
        min_span: float = 1.0,
        rare_presence: float = 0.01,
        common_presence: float = 0.99,
    ) -> None:
        self.low_quantile = low_quantile
        self.high_quantile = high_quantile
        self.min_span = min_span
        self.rare_presence = rare_presence
        self.common_presence = common_presence

    def fit(self, X: ArrayLike, y: Any = None) -> Self:  # noqa: N803 (scikit-learn's name)
        """Learn each feature's usual range and presence in the baseline ``X``."""
        if not 0.0 <= self.low_quantile < self.high_quantile <= 1.0:
            raise ValueError(
                f"need 0 <= low_quantile < high_quantile <= 1, got {self.low_quantile} and "
                f"{self.high_quantile}"
            )
        if self.min_span <= 0:
            raise ValueError(f"min_span must be above 0, got {self.min_span}")
        data = validate_data(self, X, dtype=np.float64)
        self.low_ = np.quantile(data, self.low_quantile, axis=0)
        self.high_ = np.quantile(data, self.high_quantile, axis=0)
        self.span_ = np.maximum(self.high_ - self.low_, self.min_span)
        self.presence_ = (data != 0).mean(axis=0)
        self.rare_ = self.presence_ < self.rare_presence
        self.common_ = self.presence_ >= self.common_presence
        return self

    def deviations(self, X: ArrayLike) -> NDArray[np.float64]:  # noqa: N803
        """Per feature, how far each row's value lies outside its usual range (in ranges)."""
        check_is_fitted(self)
        data = validate_data(self, X, dtype=np.float64, reset=False)
        above = np.maximum(data - self.high_, 0.0)
        below = np.maximum(self.low_ - data, 0.0)
        return np.asarray((above + below) / self.span_, dtype=np.float64)

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:  # noqa: N803
        """Per-feature deviations, then the four aggregates of :data:`AGGREGATES`."""
        check_is_fitted(self)
        data = validate_data(self, X, dtype=np.float64, reset=False)
        deviation = np.asarray(
            (np.maximum(data - self.high_, 0.0) + np.maximum(self.low_ - data, 0.0)) / self.span_
        )
        novel = np.log1p(np.abs(data[:, self.rare_]).sum(axis=1))
        missing = (data[:, self.common_] == 0).sum(axis=1)
        return np.column_stack(
            [deviation, deviation.sum(axis=1), (deviation > 0).sum(axis=1), novel, missing]
        ).astype(np.float64)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> NDArray[Any]:
        """``<feature>.deviation`` for each input feature, then :data:`AGGREGATES`."""
        check_is_fitted(self)
        if input_features is None:
            names = getattr(self, "feature_names_in_", None)
            if names is None:
                names = [f"x{i}" for i in range(self.n_features_in_)]
        else:
            names = list(input_features)
            if len(names) != self.n_features_in_:
                raise ValueError(
                    f"input_features has {len(names)} names, the transformer was fitted on "
                    f"{self.n_features_in_} features"
                )
        return np.asarray([f"{name}.deviation" for name in names] + list(AGGREGATES), dtype=object)

    def explain(
        self, row: ArrayLike, names: list[str], top: int = 3
    ) -> list[dict[str, float | str]]:
        """The features of one row furthest outside their usual range, most first: name,
        value, usual low and high, and its share of the row's total deviation. Features never
        seen in the baseline count as far out as their value (their range is 0–0)."""
        values = np.asarray(row, dtype=np.float64).reshape(1, -1)
        deviation = self.deviations(values)[0]
        total = float(deviation.sum())
        order = np.argsort(-deviation, kind="stable")
        found: list[dict[str, float | str]] = []
        for index in order[:top]:
            if deviation[index] <= 0:
                break
            found.append(
                {
                    "feature": names[index],
                    "value": float(values[0, index]),
                    "low": float(self.low_[index]),
                    "high": float(self.high_[index]),
                    "weight": round(float(deviation[index]) / total, 3) if total else 0.0,
                }
            )
        return found
