"""Every crmlab model as an MLflow pyfunc, without pickles.

The model is logged "from code" (MLflow's models-from-code): the MLflow model holds the bundle
folder as an artifact and the small file :mod:`crmlab._pyfunc_entry`, which loads the bundle with
:func:`crmlab.export.load_bundle` and calls the pipeline's scoring function. So
``mlflow.pyfunc.load_model(uri).predict(df)`` and ``mlflow.pyfunc.spark_udf`` work, and the input
signature makes MLflow refuse a wrong input schema with a clear message.

The model is portable: crmlab's own code travels with it (MLflow ``code_paths``: the ``crmlab``
package is copied into the model's ``code/`` folder, which MLflow puts first on ``sys.path`` when it
loads the model), and its requirements name only public packages, pinned to the versions it was
trained with (:func:`requirements`). So ``mlflow models build-docker``, ``--env-manager virtualenv``,
Spark workers or a bare virtualenv with ``pip install -r requirements.txt`` can run it without this
checkout; a crmlab installed there is shadowed by the model's own copy, the code it was trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from crmlab.export import Bundle

__all__ = ["get_scorer", "log_pyfunc", "requirements", "signature_of"]

def get_scorer(pipeline: str) -> Callable[[pd.DataFrame, Bundle], pd.DataFrame]:
    """The pipeline's scoring function ``(input DataFrame, Bundle) -> DataFrame`` (its record's ``scorer``)."""
    from crmlab.pipelines import get

    return get(pipeline).load("scorer")


#: crmlab's dependencies that scoring never imports: left out of a model's requirements.
_NOT_FOR_SCORING = frozenset({"optuna", "typer", "rich", "matplotlib"})


def requirements() -> list[str]:
    """The pip requirements of a logged model: crmlab's own dependencies (not its extras), each pinned
    to the version installed now, without crmlab itself (its code is logged with the model) and
    without what only training or the command line uses."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    out: list[str] = []
    for text in requires("crmlab") or []:
        req = Requirement(text)
        if req.marker is not None and "extra" in str(req.marker):
            continue
        name = req.name.lower()
        if name in _NOT_FOR_SCORING:
            continue
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # pragma: no cover - a dependency of an installed crmlab is installed
            out.append(str(req))
    return sorted(out)


def _schema(frame: pd.DataFrame) -> Any:
    """The MLflow schema of ``frame``: numpy integer columns (which cannot hold a missing value) are
    ``integer``/``long``, pandas' nullable integers (``Int64``, which can) are ``double``, the rest
    as MLflow infers.

    MLflow's own inference warns on every integer column that it cannot take a missing value; built
    here from the dtypes, the schema says which integers can and which cannot, and nothing warns."""
    import numpy as np
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.utils import _infer_schema

    ints = [c for c in frame.columns if isinstance(frame[c].dtype, np.dtype) and frame[c].dtype.kind in "iu"]
    nullable = [c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c].dtype) and c not in ints]
    as_float = frame.astype({c: "float64" for c in [*ints, *nullable]}) if ints or nullable else frame
    inferred = _infer_schema(as_float)
    small = {c for c in ints if frame[c].dtype.kind == "i" and frame[c].dtype.itemsize <= 4}
    cols = [ColSpec(DataType.integer if spec.name in small else DataType.long, spec.name, spec.required)
            if spec.name in ints else spec for spec in inferred.inputs]
    return Schema(cols)


def signature_of(input_example: pd.DataFrame, output_example: pd.DataFrame) -> Any:
    """The model signature of a crmlab pyfunc (see :func:`_schema`)."""
    from mlflow.models import ModelSignature

    return ModelSignature(inputs=_schema(input_example), outputs=_schema(output_example))


def log_pyfunc(
    bundle_dir: str | Path,
    *,
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
    name: str = "model",
) -> Any:
    """Log the bundle as a pyfunc model in the active run (registering a version, with its description
    and tags, is :func:`crmlab.registry.register_version`'s, called by
    :func:`crmlab.training.register_pyfunc`)."""
    import mlflow

    signature = signature_of(input_example, output_example)
    entry = Path(__file__).with_name("_pyfunc_entry.py")
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(entry),
        artifacts={"bundle": str(bundle_dir)},
        signature=signature,
        input_example=input_example.head(3),
        pip_requirements=requirements(),
        code_paths=[str(Path(__file__).parent)],
    )
