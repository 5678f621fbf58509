"""The anomaly model: windows' features measured against the baseline, an isolation forest, a
threshold, and the metadata to trust and explain it; saved with skops (no pickle).

:func:`train` folds baseline events into windows (:mod:`detectors.anomaly.windows`), mines the
log templates of unstructured lines (drain3), fits ``BaselineDeviation`` then scikit-learn's
``IsolationForest``, and calibrates the threshold on the baseline's own scores:

- ``contamination="auto"``: the forest's own boundary (a score above 0.5, as in Liu et al.);
- ``contamination=0.01``: the baseline's 99th percentile (1% of normal windows would alert);
- ``agency_rate=0.005``: per agency, the score its own baseline windows exceed 0.5% of the time
  (an agency whose days are noisier does not drown the others).

A score is ``-score_samples``: between 0 and 1, higher is more anomalous. Each model file holds
its metadata (:class:`ModelMeta`): features, window, training period, a hash of the training
data, thresholds, library versions. :func:`load` refuses any type in the file other than the
library's and :class:`~detectors.anomaly.features.BaselineDeviation`.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import sklearn
import skops
import skops.io as sio
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from detectors.anomaly.features import BaselineDeviation
from detectors.anomaly.windows import (
    Templates,
    WindowKey,
    Windows,
    WindowSpec,
    lines_for_templates,
)
from socpipe.errors import ConfigError

FORMAT: Final = 1
AUTO_THRESHOLD: Final = 0.5
# How far above a false positive's score its entity's threshold is raised.
FEEDBACK_MARGIN: Final = 0.01
# The only types a model file may hold beyond what skops trusts by default (the estimators and
# numpy arrays, which skops reads without running code).
TRUSTED: Final = frozenset(
    {"detectors.anomaly.features.BaselineDeviation", "sklearn.tree._tree.Tree"}
)


@dataclass
class ModelMeta:
    """What a model is: its features and window, what it was trained on, its thresholds."""

    version: str
    created: str
    entity: str
    window_s: int
    working_hours: tuple[int, int]
    features: list[str]
    templates: list[str]
    trained_from: str
    since: str | None
    until: str | None
    windows: int
    events: int
    data_sha256: str
    contamination: float | Literal["auto"]
    threshold: float
    novelty_limit: float = float("inf")
    agency_thresholds: dict[str, float] = field(default_factory=dict)
    entity_thresholds: dict[str, float] = field(default_factory=dict)
    excluded_windows: int = 0
    n_estimators: int = 200
    random_state: int = 0
    libraries: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec(self.entity, self.window_s, tuple(self.working_hours))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Judgement:
    """One window's score, the threshold it was held to, and what drove the score."""

    key: WindowKey
    score: float
    threshold: float
    features: list[dict[str, float | str]]

    @property
    def anomalous(self) -> bool:
        return self.score > self.threshold


class AnomalyModel:
    """A fitted pipeline (baseline deviation, isolation forest) and its metadata."""

    def __init__(self, pipeline: Pipeline, meta: ModelMeta) -> None:
        self.pipeline = pipeline
        self.meta = meta
        self.templates = Templates(meta.templates)

    @property
    def deviation(self) -> BaselineDeviation:
        step: BaselineDeviation = self.pipeline.named_steps["deviation"]
        return step

    def windows(self, *, samples: int = 0) -> Windows:
        """An empty fold of this model's windows, matching its features (keeping ``samples``
        of each window's first events)."""
        windows = Windows(self.meta.spec, self.templates, samples=samples)
        if list(windows.features) != self.meta.features:
            raise ConfigError("the model's features do not match this version's windows")
        return windows

    def scores(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        """Anomaly scores of ``rows`` (0 to 1, higher is more anomalous): see
        :func:`anomaly_scores`."""
        if len(rows) == 0:
            return np.zeros(0)
        return anomaly_scores(self.pipeline, rows, self.meta.novelty_limit)

    def threshold_for(self, key: WindowKey) -> float:
        """The threshold of ``key``'s entity at its agency (raised by feedback), else of its
        agency, else the model's."""
        meta = self.meta
        base = meta.agency_thresholds.get(key.agency or "", meta.threshold)
        return max(base, meta.entity_thresholds.get(entity_key(key.agency, key.entity), base))

    def judge(
        self, keys: list[WindowKey], rows: NDArray[np.float64], *, top: int = 3
    ) -> list[Judgement]:
        """Each window's judgement; the explanation only for those above their threshold."""
        scores = self.scores(rows)
        judged = []
        for index, key in enumerate(keys):
            threshold = self.threshold_for(key)
            score = float(scores[index])
            features = (
                self.deviation.explain(rows[index], self.meta.features, top=top)
                if score > threshold
                else []
            )
            judged.append(Judgement(key, score, threshold, features))
        return judged


def entity_key(agency: str | None, entity: str) -> str:
    """How ``entity_thresholds`` names an agency's entity (``so-tttt/nguyen.van.a``): the same
    account name at two agencies is two people."""
    return f"{agency or ''}/{entity}"


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "skops": skops.__version__,
    }


def data_hash(features: list[str], rows: NDArray[np.float64]) -> str:
    """SHA-256 of the training matrix and its column names (what a model can be traced to)."""
    digest = hashlib.sha256("\x1f".join(features).encode())
    digest.update(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
    return digest.hexdigest()


def anomaly_scores(
    pipeline: Pipeline, rows: NDArray[np.float64], novelty_limit: float
) -> NDArray[np.float64]:
    """The forest's score of each row (``-score_samples``: 0 to 1, higher is more anomalous),
    raised above 0.5 for a row further outside the baseline than any baseline window was.

    A forest trained on the baseline never splits on what was constant there (a template never
    seen, a count always within the same range in a short baseline): such a row looks normal to
    every tree. Its total deviation from the baseline (``deviation.total``) beyond the largest
    in the baseline (``novelty_limit``) gives it ``0.5 + 0.5 * (1 - exp(-excess))`` instead,
    when that is higher than the forest's score.
    """
    deviation: BaselineDeviation = pipeline.named_steps["deviation"]
    features = deviation.transform(rows)
    forest = np.asarray(-pipeline.named_steps["forest"].score_samples(features), dtype=np.float64)
    excess = features[:, deviation.n_features_in_] - novelty_limit
    novelty = np.where(excess > 0, 0.5 + 0.5 * (1.0 - np.exp(-np.maximum(excess, 0.0))), 0.0)
    return np.maximum(forest, novelty)


def fit_rows(
    rows: NDArray[np.float64],
    *,
    contamination: float | Literal["auto"] = "auto",
    n_estimators: int = 200,
    random_state: int = 0,
    max_samples: int | Literal["auto"] = "auto",
) -> tuple[Pipeline, float, float, NDArray[np.float64]]:
    """The fitted pipeline on baseline ``rows``, its threshold, its novelty limit (the largest
    total deviation of a baseline row), and the rows' own scores."""
    pipeline = Pipeline(
        [
            ("deviation", BaselineDeviation()),
            (
                "forest",
                IsolationForest(
                    n_estimators=n_estimators,
                    max_samples=max_samples,
                    random_state=random_state,
                    n_jobs=1,
                ),
            ),
        ]
    )
    pipeline.fit(rows)
    deviation: BaselineDeviation = pipeline.named_steps["deviation"]
    novelty_limit = float(deviation.transform(rows)[:, deviation.n_features_in_].max())
    scores = anomaly_scores(pipeline, rows, novelty_limit)
    if contamination == "auto":
        threshold = AUTO_THRESHOLD
    else:
        if not 0.0 < contamination < 0.5:
            raise ConfigError(f"contamination must be 'auto' or in (0, 0.5), not {contamination}")
        threshold = float(np.quantile(scores, 1.0 - contamination))
    return pipeline, threshold, novelty_limit, scores


def train(
    events: Iterable[Mapping[str, Any]],
    spec: WindowSpec,
    *,
    trained_from: str,
    contamination: float | Literal["auto"] = "auto",
    agency_rate: float | None = None,
    templates: int = 200,
    exclude: Iterable[tuple[str, str, datetime, datetime]] = (),
    n_estimators: int = 200,
    random_state: int = 0,
) -> AnomalyModel:
    """A model of the baseline ``events`` (read twice: templates, then windows).

    ``exclude`` names windows (agency, entity, and the first and last window start) analysts
    judged false positives of an earlier model: they are left out of the baseline (a window the
    old model found odd is no sure example of normal), and that agency's entity's threshold is
    raised just above what they score under the new model (``entity_thresholds``, keyed by
    :func:`entity_key`), so the same behaviour does not alert again.
    """
    events = list(events)
    miner = Templates()
    for line in lines_for_templates(events):
        miner.learn(line)
    vocabulary = miner.vocabulary(templates)
    windows = Windows(spec, Templates(vocabulary))
    times: list[datetime] = []
    for event in events:
        if windows.add(event):
            stamp = event.get("@timestamp")
            if isinstance(stamp, datetime):
                times.append(stamp)
            elif isinstance(stamp, str):
                times.append(datetime.fromisoformat(stamp.replace("Z", "+00:00")))
    keys, rows = windows.take()
    ranges: dict[str, list[tuple[datetime, datetime]]] = {}
    for agency, who, first, last in exclude:
        ranges.setdefault(entity_key(agency, who), []).append(
            (first.astimezone(UTC), last.astimezone(UTC))
        )

    def judged_false(key: WindowKey) -> bool:
        spans = ranges.get(entity_key(key.agency, key.entity), ())
        return any(first <= key.start <= last for first, last in spans)

    dropped = [i for i, key in enumerate(keys) if judged_false(key)]
    kept = [i for i, key in enumerate(keys) if not judged_false(key)]
    excluded_keys, excluded_rows = [keys[i] for i in dropped], rows[dropped]
    keys, rows = [keys[i] for i in kept], rows[kept]
    if len(keys) < 10:
        raise ConfigError(
            f"{len(keys)} windows of {spec.entity} in the baseline: too few to learn what is "
            "normal (10 at least; a longer period, or another entity)"
        )
    pipeline, threshold, novelty_limit, scores = fit_rows(
        rows, contamination=contamination, n_estimators=n_estimators, random_state=random_state
    )
    agency_thresholds: dict[str, float] = {}
    if agency_rate is not None:
        if not 0.0 < agency_rate < 0.5:
            raise ConfigError(f"agency_rate must be in (0, 0.5), not {agency_rate}")
        by_agency: dict[str, list[float]] = {}
        for key, score in zip(keys, scores, strict=True):
            by_agency.setdefault(key.agency or "", []).append(float(score))
        agency_thresholds = {
            agency: float(np.quantile(values, 1.0 - agency_rate))
            for agency, values in by_agency.items()
            if agency and len(values) >= 20
        }
    # An entity whose windows analysts called false positives is held to a threshold above
    # what those windows score now, so the same behaviour does not alert again.
    entity_thresholds: dict[str, float] = {}
    if excluded_keys:
        for key, score in zip(
            excluded_keys,
            anomaly_scores(pipeline, excluded_rows, novelty_limit),
            strict=True,
        ):
            raised = max(threshold, min(float(score) + FEEDBACK_MARGIN, 1.0))
            name = entity_key(key.agency, key.entity)
            entity_thresholds[name] = max(entity_thresholds.get(name, 0.0), raised)
    names = list(windows.features)
    created = datetime.now(UTC)
    digest = data_hash(names, rows)
    meta = ModelMeta(
        # Two models trained in the same second on different data still differ.
        version=f"{spec.entity}-{spec.window_s}s-{created:%Y%m%dT%H%M%S}-{digest[:8]}",
        created=created.isoformat(),
        entity=spec.entity,
        window_s=spec.window_s,
        working_hours=spec.working_hours,
        features=names,
        templates=vocabulary,
        trained_from=trained_from,
        since=min(times).isoformat() if times else None,
        until=max(times).isoformat() if times else None,
        windows=len(keys),
        events=len(events),
        data_sha256=digest,
        contamination=contamination,
        threshold=threshold,
        novelty_limit=novelty_limit,
        agency_thresholds=agency_thresholds,
        entity_thresholds=entity_thresholds,
        excluded_windows=len(excluded_keys),
        n_estimators=n_estimators,
        random_state=random_state,
        libraries=_versions(),
    )
    return AnomalyModel(pipeline, meta)


def dumps(model: AnomalyModel) -> bytes:
    """The model as a skops file's bytes."""
    meta = asdict(model.meta)
    meta["working_hours"] = list(meta["working_hours"])
    return bytes(sio.dumps({"format": FORMAT, "meta": meta, "pipeline": model.pipeline}))


def save(model: AnomalyModel, path: Path) -> None:
    """Write the model to ``path`` (a .skops file)."""
    path.write_bytes(dumps(model))


def loads(data: bytes, *, where: str = "model") -> AnomalyModel:
    """A model from skops bytes; ConfigError for any type not in :data:`TRUSTED`, or a file
    that is not a socpipe model."""
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as error:
        raise ConfigError(f"{where}: not a skops model file ({error})") from error
    refused = untrusted - TRUSTED
    if refused:
        raise ConfigError(
            f"{where}: refusing types a socpipe model does not hold: {sorted(refused)}"
        )
    content = sio.loads(data, trusted=sorted(untrusted))
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a socpipe model of format {FORMAT}")
    pipeline = content.get("pipeline")
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"{where}: the file holds no pipeline")
    raw = dict(content["meta"])
    raw["working_hours"] = tuple(raw["working_hours"])
    return AnomalyModel(pipeline, ModelMeta(**raw))


def load(path: Path) -> AnomalyModel:
    """The model in the skops file at ``path`` (see :func:`loads`)."""
    return loads(path.read_bytes(), where=str(path))
